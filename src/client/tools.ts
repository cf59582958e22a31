/**
 * The three agent tools — generate_image, edit_image, describe_image — defined once (names, descriptions,
 * zod input schemas taken from the HTTP routes, what they return) and wrapped by the MCP server and the
 * LangChain tools.
 */
import { existsSync } from "node:fs";
import { z } from "zod";
import { type Describer, loadDescriber } from "../agent/describer.ts";
import { AtelierError, invalid } from "../errors.ts";
import { GenerationRequest, MAX_UPLOAD_BYTES, SessionMessage } from "../service/schemas.ts";
import { decodeBase64Upload } from "../service/uploads.ts";
import type { AtelierClient, CallOptions, ImageOutcome } from "./client.ts";

export const GenerateImageInput = GenerationRequest;

export const EditImageInput = SessionMessage.extend({
  session_id: z
    .string()
    .optional()
    .meta({ description: "The session of the image to edit (from generate_image); or send image." }),
});

export const DescribeImageInput = z.strictObject({
  image: z
    .string()
    .min(1)
    .max(Math.ceil((MAX_UPLOAD_BYTES * 4) / 3) + 64)
    .optional()
    .meta({ description: "Base64 PNG or JPEG (plain or data URL), at most 4 MB." }),
  session_id: z.string().optional().meta({ description: "Describe this session's current image instead." }),
});

const Round = z.object({
  round: z.number(),
  plan: z.string().nullable(),
  mode: z.string(),
  seeds: z.array(z.number()),
  agreement: z.number().nullable(),
  critique: z.string().nullable(),
});

/** What generate_image and edit_image return besides the PNGs. */
export const ImageResult = z.object({
  session_id: z.string().nullable().meta({ description: "Pass to edit_image to edit this image." }),
  generation_id: z.string(),
  plan: z.string().nullable().meta({ description: "The plan in planning tokens." }),
  caption: z.string().nullable().meta({ description: "The plan's scene in words." }),
  seed: z.number(),
  images: z.array(z.object({ seed: z.number(), url: z.string().optional() })),
  rounds: z.array(Round).meta({ description: "Critique rounds: plan, agreement and critique of each." }),
  timings: z.record(z.string(), z.number()),
});
export type ImageResult = z.infer<typeof ImageResult>;

export const DescribeResult = z.object({
  plan: z.string().meta({ description: "The image re-described in the plan format." }),
  scene: z.record(z.string(), z.unknown()),
  confidence: z.record(z.string(), z.unknown()).nullable(),
  describer: z.string(),
});
export type DescribeResult = z.infer<typeof DescribeResult>;

export const TOOLS = {
  generate_image: {
    title: "Generate an image",
    description:
      "Plans the request as an image plan (planning tokens), draws it with the diffusion model and, when the engine has a critic, re-describes, critiques and revises it. Returns the PNG with its plan, seed and session_id (for edit_image).",
  },
  edit_image: {
    title: "Edit an image",
    description:
      "Edits the current image of a session (session_id from generate_image) as the text asks, keeping what it does not mention: img2img with the same seed, or inpainting where a mask is given (base64 PNG of the image's size whose transparent pixels mark the area to repaint). Without session_id, edits the given image in a new session.",
  },
  describe_image: {
    title: "Describe an image",
    description:
      "Re-describes an image in Atelier's plan format (objects with shape, colour, size and position; background, style, lighting) with the describer model of the critique loop.",
  },
} as const;

export interface ImageToolResult {
  result: ImageResult;
  /** PNG bytes of each image. */
  pngs: Uint8Array[];
}

async function imageToolResult(client: AtelierClient, outcome: ImageOutcome): Promise<ImageToolResult> {
  const result: ImageResult = {
    session_id: outcome.session_id,
    generation_id: outcome.generation_id,
    plan: outcome.plan,
    caption: outcome.caption,
    seed: outcome.seed,
    images: outcome.images.map(({ seed, url }) => (client.reachable ? { seed, url } : { seed })),
    rounds: outcome.trace.map(({ round, plan, mode, seeds, agreement, critique }) => ({
      round,
      plan,
      mode,
      seeds,
      agreement,
      critique,
    })),
    timings: outcome.timings,
  };
  const pngs = await Promise.all(outcome.images.map((image) => client.imagePng(image.url)));
  return { result, pngs };
}

/** One image from words starts an edit session (so that it can be edited); plans and batches do not. */
export async function generateImage(
  client: AtelierClient,
  args: z.output<typeof GenerateImageInput>,
  call: CallOptions = {},
): Promise<ImageToolResult> {
  if (args.prompt !== undefined && (args.n ?? 1) === 1) {
    const { prompt, plan: _plan, n: _n, ...settings } = args;
    const session = await client.createSession(prompt.slice(0, 200));
    return imageToolResult(client, await client.message(session, { text: prompt, ...settings }, call));
  }
  return imageToolResult(client, await client.generate(args, call));
}

export async function editImage(
  client: AtelierClient,
  args: z.output<typeof EditImageInput>,
  call: CallOptions = {},
): Promise<ImageToolResult> {
  const { session_id, ...message } = args;
  if (session_id === undefined && message.image === undefined)
    throw invalid("session_id", "is required (or send image to edit)");
  const session = session_id ?? (await client.createSession(message.text.slice(0, 200)));
  return imageToolResult(client, await client.message(session, message, call));
}

/** The describer model, loaded on first use and shared by every caller of the process. */
export class DescriberSlot {
  private loading: Promise<Describer> | null = null;

  constructor(readonly dir: string | null) {}

  /** Why describe_image cannot run, or null when the model folder is there. */
  get problem(): string | null {
    if (this.dir === null) return "describe_image is unavailable: no describer model is configured";
    if (!existsSync(this.dir))
      return `describe_image is unavailable: no describer model folder at ${this.dir} (set ATELIER_DESCRIBER or put it in <models>/describer)`;
    return null;
  }

  get(): Promise<Describer> {
    const problem = this.problem;
    if (problem) return Promise.reject(new AtelierError(problem, { status: 503, code: "model_unavailable" }));
    if (!this.loading) {
      this.loading = loadDescriber(this.dir!);
      this.loading.catch(() => {
        this.loading = null;
      });
    }
    return this.loading;
  }

  async dispose(): Promise<void> {
    const loading = this.loading;
    this.loading = null;
    await (await loading?.catch(() => null))?.dispose();
  }
}

export async function describeImage(
  client: AtelierClient,
  describer: DescriberSlot,
  args: z.output<typeof DescribeImageInput>,
  signal?: AbortSignal,
): Promise<DescribeResult> {
  let base64 = args.image;
  if (base64 === undefined) {
    if (args.session_id === undefined) throw invalid("image", "is required (or give session_id)");
    const url = await client.currentImageUrl(args.session_id);
    if (!url) throw invalid("session_id", "this session has no image yet");
    base64 = Buffer.from(await client.imagePng(url)).toString("base64");
  }
  const { image } = decodeBase64Upload(base64, "image");
  const model = await describer.get();
  const description = await model.describe(image, { signal });
  return {
    plan: description.plan,
    scene: description.scene as unknown as Record<string, unknown>,
    confidence: description.confidence as unknown as Record<string, unknown> | null,
    describer: model.name,
  };
}
