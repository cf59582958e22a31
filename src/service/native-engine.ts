/**
 * The first engine behind the service, a single pass over the components that exist: the planner LLM
 * writes the plan; the projection layers turn the plan span's hidden states into the denoiser's
 * conditioning (the design's path: the denoiser never sees raw text); txt2img, img2img or inpaint renders
 * it. Without a projection folder the plan goes to the diffusion model's own text encoder as a full caption
 * of its scene (the captions that encoder was trained on); without a planner the request text does.
 *
 * There is no describer here, so no critique: one round, recorded in the trace format the critique-loop
 * agent uses.
 */
import { captionsFor } from "../../evals/language/captions.ts";
import { parsePlan, printPlan } from "../../evals/language/plan.ts";
import { createRng } from "../../evals/rng.ts";
import type { Scene } from "../../evals/scene.ts";
import { pixelsToImages, type StepEvent } from "../../pipelines/denoise.ts";
import { encodeBase64Png, type RgbImage } from "../../pipelines/image.ts";
import { img2img } from "../../pipelines/img2img.ts";
import { inpaint } from "../../pipelines/inpaint.ts";
import { type Conditioning, type DiffusionModel, loadDiffusionModel } from "../../pipelines/model-folder.ts";
import { randomSeed } from "../../pipelines/random.ts";
import { SCHEDULER_NAMES } from "../../pipelines/schedulers/index.ts";
import { txt2img } from "../../pipelines/txt2img.ts";
import type { ChatMessage } from "../../planner/planner.ts";
import { Planner } from "../../planner/planner.ts";
import { loadProjection, type Projection } from "../../projection/projection.ts";
import { DEFAULTS } from "../defaults.ts";
import type {
  EditMessage,
  EditSettings,
  Engine,
  EngineInfo,
  GenerateRequest,
  GenerateResult,
  RunContext,
  SessionState,
  Settings,
  TraceRound,
} from "./engine.ts";

export interface NativeEngineOptions {
  /** Diffusion model folder (diffusers ONNX layout). */
  ldm: string;
  /** Planner LLM folder (transformers.js layout); optional. */
  planner?: string | null;
  /** Projection folder trained for this planner and denoiser; optional (needs the planner). */
  projection?: string | null;
  /** ONNX Runtime intra-op threads per session. */
  threads?: number;
  /** Check model files against their manifest (default true). */
  verify?: boolean;
}

/** Earlier turns the planner sees in an edit (its context is short; recent turns carry the edit). */
const HISTORY_TURNS = 8;
const DEFAULT_STRENGTH = 0.6;

/** A plan (or, without a planner, the request text) and the conversation it answers. */
interface Planned {
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

const since = (start: number) => performance.now() - start;

export class NativeEngine implements Engine {
  readonly info: EngineInfo;

  private constructor(
    private readonly model: DiffusionModel,
    private readonly planner: Planner | null,
    private readonly projection: Projection | null,
  ) {
    this.info = {
      name: projection ? "planner+projection" : planner ? "planner+text-encoder" : "text-encoder",
      sizes: [{ width: model.width, height: model.height }],
      samplers: [...SCHEDULER_NAMES],
      defaultSampler: model.defaultScheduler,
      critique: false,
      planner: planner !== null,
    };
  }

  static async load(options: NativeEngineOptions): Promise<NativeEngine> {
    const model = await loadDiffusionModel(options.ldm, { threads: options.threads, verify: options.verify });
    let planner: Planner | null = null;
    try {
      planner = options.planner ? await Planner.load(options.planner) : null;
      const projection =
        planner && options.projection
          ? await loadProjection(options.projection, { planner, denoiser: model })
          : null;
      return new NativeEngine(model, planner, projection);
    } catch (error) {
      await Promise.all([model.dispose(), planner?.dispose()]);
      throw error;
    }
  }

  async dispose(): Promise<void> {
    await Promise.all([this.model.dispose(), this.planner?.dispose(), this.projection?.dispose()]);
  }

  async generate(request: GenerateRequest, context: RunContext): Promise<GenerateResult> {
    const started = performance.now();
    const timings: Record<string, number> = {};
    let planned: Planned;
    if (request.plan !== undefined) {
      const scene = parsePlan(request.plan);
      const caption = captionForScene(scene);
      // A plan given directly answers its own description.
      planned = { plan: printPlan(scene), caption, conversation: [{ role: "user", content: caption }] };
      context.onEvent({ type: "plan", round: 1, plan: planned.plan!, caption });
    } else {
      planned = await this.planFor([{ role: "user", content: request.prompt! }], context, timings);
    }
    const round = await this.render(planned, null, request, context, timings);
    timings.total = since(started);
    return {
      plans: round.images.map(() => round.plan),
      images: round.images,
      seeds: round.seeds,
      trace: [round],
      timings,
    };
  }

  async edit(
    state: SessionState,
    message: EditMessage,
    settings: EditSettings,
    context: RunContext,
  ): Promise<GenerateResult> {
    const started = performance.now();
    const timings: Record<string, number> = {};
    const history: ChatMessage[] = [];
    for (const turn of state.history.slice(-HISTORY_TURNS)) {
      if (turn.role === "user") history.push({ role: "user", content: turn.text });
      else if (turn.plan) history.push({ role: "assistant", content: turn.plan });
    }
    // The planner needs a user turn after every assistant turn; drop a dangling assistant turn at the start.
    while (history[0]?.role === "assistant") history.shift();
    history.push({ role: "user", content: message.text });
    const planned = await this.planFor(history, context, timings);
    const base = message.image ?? state.image;
    const keep = {
      seed: settings.seed ?? state.seed ?? undefined,
      sampler: settings.sampler ?? state.sampler,
    };
    const round = await this.render(
      planned,
      base ? { image: base, mask: message.mask ?? null, strength: settings.strength } : null,
      { ...settings, seed: keep.seed, sampler: keep.sampler ?? undefined },
      context,
      timings,
    );
    timings.total = since(started);
    return {
      plans: round.images.map(() => round.plan),
      images: round.images,
      seeds: round.seeds,
      trace: [round],
      timings,
    };
  }

  private async planFor(
    conversation: ChatMessage[],
    context: RunContext,
    timings: Record<string, number>,
  ): Promise<Planned> {
    if (!this.planner) return { plan: null, caption: conversation.at(-1)!.content, conversation };
    context.onEvent({ type: "planning", round: 1 });
    const start = performance.now();
    const result = await this.planner.plan(conversation);
    timings.planning = since(start);
    const caption = captionForScene(result.scene);
    context.onEvent({ type: "plan", round: 1, plan: result.text, caption });
    return { plan: result.text, caption, conversation };
  }

  /**
   * Conditioning of the plan and what it is guided against: the projection's learned null, or the text
   * encoder's empty prompt; a negative prompt always goes through the text encoder.
   */
  private async conditioning(
    planned: Planned,
    negative: string | undefined,
    timings: Record<string, number>,
  ): Promise<{ cond: Conditioning; uncond: Conditioning; via: "projection" | "text_encoder" }> {
    const start = performance.now();
    let result: { cond: Conditioning; uncond: Conditioning; via: "projection" | "text_encoder" };
    if (this.projection && this.planner && planned.plan) {
      const projected = await this.projection.condition(this.planner, planned.conversation, planned.plan);
      const uncond = negative ? (await this.model.encodeText([negative]))[0]! : projected.uncond;
      result = { cond: projected.cond, uncond, via: "projection" };
    } else {
      const [cond, uncond] = await this.model.encodeText([planned.caption, negative ?? ""]);
      result = { cond: cond!, uncond: uncond!, via: "text_encoder" };
    }
    timings.condition = since(start);
    return result;
  }

  private async render(
    planned: Planned,
    source: { image: RgbImage; mask: EditMessage["mask"] | null; strength?: number } | null,
    settings: Settings & { strength?: number },
    context: RunContext,
    timings: Record<string, number>,
  ): Promise<TraceRound> {
    const model = this.model;
    const { via, ...conditioning } = await this.conditioning(planned, settings.negative, timings);

    let chain = Promise.resolve();
    let previewError: unknown = null;
    const onStep = (event: StepEvent) => {
      const step = { type: "step" as const, round: 1, step: event.step + 1, steps: event.steps };
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
    const start = performance.now();
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
    timings.generate = since(start);
    timings.encode_image = result.timings.encode;
    timings.denoise = result.timings.denoise;
    timings.decode = result.timings.decode;
    return {
      round: 1,
      plan: planned.plan,
      caption: planned.caption,
      conditioning: via,
      mode,
      seeds: result.seeds,
      settings: {
        steps: options.steps,
        guidance: options.guidance,
        sampler: result.scheduler,
        ...(strength === undefined ? {} : { strength }),
      },
      images: result.images,
      critique: null,
      timings: {
        encode_image: result.timings.encode,
        denoise: result.timings.denoise,
        decode: result.timings.decode,
      },
    };
  }
}
