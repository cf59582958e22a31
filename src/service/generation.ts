/**
 * The pieces every engine runs a generation with, shared by the single-pass NativeEngine and the critique
 * loop (src/agent/engine.ts): the conversation an edit is planned in, planning with progress events, the
 * plan's conditioning (projection layers, or the text encoder on a caption of the plan's scene), and one
 * sampling pass (txt2img, img2img or inpaint) with step events and optional live previews.
 */
import { captionsFor } from "../../evals/language/captions.ts";
import { parsePlan, printPlan } from "../../evals/language/plan.ts";
import { createRng } from "../../evals/rng.ts";
import type { Scene } from "../../evals/scene.ts";
import { pixelsToImages, type StepEvent } from "../../pipelines/denoise.ts";
import { encodeBase64Png, type Mask, type RgbImage } from "../../pipelines/image.ts";
import { img2img } from "../../pipelines/img2img.ts";
import { inpaint } from "../../pipelines/inpaint.ts";
import type { Conditioning, DiffusionModel } from "../../pipelines/model-folder.ts";
import { randomSeed } from "../../pipelines/random.ts";
import { txt2img } from "../../pipelines/txt2img.ts";
import type { ChatMessage, Planner } from "../../planner/planner.ts";
import type { EditControls, ProjectedConditioning, Projection } from "../../projection/projection.ts";
import { DEFAULTS } from "../defaults.ts";
import type { RunContext, SessionTurn, Settings, TraceRound } from "./engine.ts";

/** Earlier turns the planner sees in an edit (its context is short; recent turns carry the edit). */
export const HISTORY_TURNS = 8;
/** img2img strength of an edit that does not name one. */
export const DEFAULT_STRENGTH = 0.6;

/** The models a generation runs on; the planner and the projection are optional. */
export interface Models {
  model: DiffusionModel;
  planner: Planner | null;
  projection: Projection | null;
}

/** A plan (or, without a planner, the request text) and the conversation it answers. */
export interface Planned {
  plan: string | null;
  /** The scene in words: the text encoder's input on the caption path, the assistant's reply text. */
  caption: string;
  /** The conversation up to and including the request the plan answers. */
  conversation: ChatMessage[];
}

/** The scene as the denoiser's text encoder knows it: the first full caption, fixed by a constant seed. */
export function captionForScene(scene: Scene): string {
  return captionsFor(scene, createRng(0))[0]!;
}

export const since = (start: number) => performance.now() - start;

/** The planner's view of a session: its recent turns (assistant turns as their plans), then the new request. */
export function sessionConversation(history: readonly SessionTurn[], text: string): ChatMessage[] {
  const messages: ChatMessage[] = [];
  for (const turn of history.slice(-HISTORY_TURNS)) {
    if (turn.role === "user") messages.push({ role: "user", content: turn.text });
    else if (turn.plan) messages.push({ role: "assistant", content: turn.plan });
  }
  // The planner needs a user turn after every assistant turn; drop a dangling assistant turn at the start.
  while (messages[0]?.role === "assistant") messages.shift();
  messages.push({ role: "user", content: text });
  return messages;
}

/** A plan given directly answers its own description. */
export function plannedFromPlan(text: string): Planned & { plan: string } {
  const scene = parsePlan(text);
  const caption = captionForScene(scene);
  return { plan: printPlan(scene), caption, conversation: [{ role: "user", content: caption }] };
}

/** Plans the last request of a conversation, reporting `planning` and `plan` events for `round`. */
export async function planConversation(
  planner: Planner,
  conversation: ChatMessage[],
  round: number,
  context: RunContext,
): Promise<Planned & { plan: string; scene: Scene }> {
  context.onEvent({ type: "planning", round });
  const result = await planner.plan(conversation);
  const caption = captionForScene(result.scene);
  context.onEvent({ type: "plan", round, plan: result.text, caption });
  return { plan: result.text, caption, conversation, scene: result.scene };
}

export interface Conditioned {
  cond: Conditioning;
  uncond: Conditioning;
  via: "projection" | "text_encoder";
  /** The projection's output before a negative prompt replaced its null (what a later layout lock keeps). */
  projected: ProjectedConditioning | null;
}

/**
 * Conditioning of the plan and what it is guided against: the projection's learned null, or the text
 * encoder's empty prompt; a negative prompt always goes through the text encoder. `controls` (style or
 * layout lock) apply on the projection path only.
 */
export async function conditionPlan(
  models: Models,
  planned: Planned,
  negative: string | undefined,
  controls?: EditControls,
): Promise<Conditioned> {
  const { model, planner, projection } = models;
  if (projection && planner && planned.plan) {
    const projected = await projection.condition(planner, planned.conversation, planned.plan, controls);
    const uncond = negative ? (await model.encodeText([negative]))[0]! : projected.uncond;
    return { cond: projected.cond, uncond, via: "projection", projected };
  }
  return conditionText(model, planned.caption, negative);
}

/** Conditioning of `text` through the model's text encoder, guided against `negative` or the empty prompt. */
export async function conditionText(
  model: DiffusionModel,
  text: string,
  negative: string | undefined,
): Promise<Conditioned> {
  const [cond, uncond] = await model.encodeText([text, negative ?? ""]);
  return { cond: cond!, uncond: uncond!, via: "text_encoder", projected: null };
}

/** What an img2img or inpaint pass starts from; null: txt2img. */
export interface Source {
  image: RgbImage;
  mask: Mask | null;
  strength?: number;
}

export interface Sampled {
  mode: TraceRound["mode"];
  seeds: number[];
  images: RgbImage[];
  settings: TraceRound["settings"];
  timings: { encode_image: number; denoise: number; decode: number };
}

/** One sampling pass under `conditioning`, reporting a `step` event (with a preview if asked) per step. */
export async function samplePass(
  model: DiffusionModel,
  conditioning: { cond: Conditioning; uncond: Conditioning },
  source: Source | null,
  settings: Settings,
  round: number,
  context: RunContext,
): Promise<Sampled> {
  let chain = Promise.resolve();
  let previewError: unknown = null;
  const onStep = (event: StepEvent) => {
    const step = { type: "step" as const, round, step: event.step + 1, steps: event.steps };
    if (!settings.preview) {
      context.onEvent(step);
      return;
    }
    // Decoding the live latents is async; a chain keeps step events in order.
    const f = model.vaeScaleFactor;
    const first = event.latents.slice(0, event.latents.length / (settings.n ?? 1));
    const height = source?.image.height ?? model.height;
    const width = source?.image.width ?? model.width;
    const decoded = model.decodeLatents(first, 1, height / f, width / f);
    // Handled by the chain later; this keeps a failure before then from counting as unhandled.
    decoded.catch(() => {});
    chain = chain
      .then(async () => {
        const [image] = pixelsToImages(await decoded, 1, width, height);
        context.onEvent({ ...step, preview: encodeBase64Png(image!) });
      })
      .catch((error: unknown) => {
        previewError ??= error;
      });
  };
  const options = {
    steps: settings.steps ?? DEFAULTS.steps,
    guidance: settings.guidance ?? DEFAULTS.guidance,
    scheduler: settings.sampler,
    seed: settings.seed ?? randomSeed(),
    numImages: settings.n ?? 1,
    onStep,
    signal: context.signal,
  };
  let mode: TraceRound["mode"] = "txt2img";
  let strength: number | undefined;
  let result: Awaited<ReturnType<typeof txt2img>>;
  if (!source) {
    result = await txt2img(model, conditioning, options);
  } else if (source.mask) {
    mode = "inpaint";
    strength = source.strength ?? 1;
    result = await inpaint(model, conditioning, source.image, source.mask, { ...options, strength });
  } else {
    mode = "img2img";
    strength = source.strength ?? DEFAULT_STRENGTH;
    result = await img2img(model, conditioning, source.image, { ...options, strength });
  }
  await chain;
  if (previewError) throw previewError;
  return {
    mode,
    seeds: result.seeds,
    images: result.images,
    settings: {
      steps: options.steps,
      guidance: options.guidance,
      sampler: result.scheduler,
      ...(strength === undefined ? {} : { strength }),
    },
    timings: {
      encode_image: result.timings.encode,
      denoise: result.timings.denoise,
      decode: result.timings.decode,
    },
  };
}
