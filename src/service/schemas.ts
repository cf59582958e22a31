/**
 * One zod schema per route (request bodies) and the response shapes, shared by validation and by the
 * OpenAPI document (`z.toJSONSchema`). `parseInput` turns the first zod issue into a 400 AtelierError
 * whose `param` is the offending field and whose message says what was wrong with it.
 */
import { z } from "zod";
import { SCHEDULER_NAMES } from "../../pipelines/schedulers/index.ts";
import { AtelierError } from "../errors.ts";
import { EDIT_LOCKS } from "./engine.ts";

export const MAX_PROMPT_CHARS = 1024;
export const MAX_N = 4;
export const MAX_UPLOAD_BYTES = 4 * 1024 * 1024;

const Prompt = z
  .string()
  .trim()
  .min(1)
  .max(MAX_PROMPT_CHARS)
  .meta({ description: `Request in words, 1–${MAX_PROMPT_CHARS} characters.` });
const Seed = z.int().min(0).max(4294967295).meta({ description: "uint32; image i uses seed + i." });
const Steps = z.int().min(1).max(100).meta({ description: "Denoising steps, 1–100 (default 20)." });
const Guidance = z.number().min(0).max(20).meta({ description: "Classifier-free guidance scale, 0–20." });
const Sampler = z.enum(SCHEDULER_NAMES as [string, ...string[]]).meta({ description: "Scheduler." });
const Rounds = z.int().min(1).max(8).meta({ description: "Most critique rounds (1–8)." });
const Negative = z.string().max(MAX_PROMPT_CHARS).meta({ description: "Negative prompt." });
const N = z
  .int()
  .min(1)
  .max(MAX_N)
  .meta({ description: `Images to make, 1–${MAX_N}.` });
const Strength = z.number().gt(0).max(1).meta({ description: "How much an edit may change, (0, 1]." });
/** base64 of at most 4 MB: 4/3 of it, plus room for a data-URL prefix. */
const Base64Image = z
  .string()
  .min(1)
  .max(Math.ceil((MAX_UPLOAD_BYTES * 4) / 3) + 64)
  .meta({ description: "Base64 PNG or JPEG (plain or data URL), at most 4 MB." });

export const GenerationRequest = z
  .strictObject({
    prompt: Prompt.optional(),
    plan: z
      .string()
      .min(1)
      .max(4 * MAX_PROMPT_CHARS)
      .optional()
      .meta({ description: "A plan in the plan format (<IMG_BEGIN> … <IMG_END>) instead of a prompt." }),
    seed: Seed.optional(),
    steps: Steps.optional(),
    guidance: Guidance.optional(),
    sampler: Sampler.optional(),
    rounds: Rounds.optional(),
    negative: Negative.optional(),
    n: N.optional(),
    preview: z.boolean().optional().meta({ description: "Attach a PNG preview to every step event." }),
  })
  .superRefine((body, ctx) => {
    if ((body.prompt === undefined) === (body.plan === undefined))
      ctx.addIssue({
        code: "custom",
        path: [body.prompt === undefined ? "prompt" : "plan"],
        message:
          body.prompt === undefined ? "is required (or give a plan)" : "give either prompt or plan, not both",
      });
  });
export type GenerationRequest = z.infer<typeof GenerationRequest>;

export const SessionCreate = z.strictObject({
  title: z.string().max(200).optional(),
});

export const SessionMessage = z.strictObject({
  text: Prompt,
  image: Base64Image.optional(),
  mask: Base64Image.optional().meta({
    description:
      "PNG of the image's size: transparent pixels (in a mask without transparency, white pixels) mark the area to repaint.",
  }),
  seed: Seed.optional(),
  steps: Steps.optional(),
  guidance: Guidance.optional(),
  sampler: Sampler.optional(),
  rounds: Rounds.optional(),
  negative: Negative.optional(),
  strength: Strength.optional(),
  lock: z.enum(EDIT_LOCKS).optional().meta({
    description:
      "Keep one stream of the session image's conditioning (engines with projection layers): layout keeps what and where and takes the new look; style keeps the look and re-plans the objects.",
  }),
  preview: z.boolean().optional(),
});
export type SessionMessage = z.infer<typeof SessionMessage>;

const Size = z
  .string()
  .regex(/^\d+x\d+$/)
  .meta({ description: 'WIDTHxHEIGHT; the model\'s size ("64x64" for the embedded model).' });
const ResponseFormat = z.enum(["b64_json", "url"]);
/** OpenAI parameters accepted for compatibility; they do not change what this server makes. */
const openAiExtras = {
  model: z.string().max(256).optional(),
  user: z.string().max(256).optional(),
  quality: z.string().max(32).optional(),
  style: z.string().max(32).optional(),
  output_format: z.literal("png").optional(),
};

export const OpenAIImageGeneration = z.strictObject({
  prompt: Prompt,
  n: N.optional(),
  size: Size.optional(),
  response_format: ResponseFormat.optional(),
  ...openAiExtras,
});

const FileField = z
  .custom<File>((v) => v instanceof File, { message: "must be a file" })
  .meta({ type: "string", format: "binary" });
/** Form fields arrive as text; numbers are parsed here so the errors still name the field. */
const FormInt = (schema: z.ZodInt) =>
  z
    .string()
    .regex(/^\d+$/, { message: "must be an integer" })
    .transform(Number)
    .pipe(schema)
    .meta({ type: "integer" });

export const OpenAIImageEdit = z.strictObject({
  image: FileField.meta({ description: "PNG or JPEG, at most 4 MB, the model's size." }),
  mask: FileField.optional().meta({
    description: "PNG of the image's size whose transparent pixels mark the area to edit.",
  }),
  prompt: Prompt,
  n: FormInt(N).optional(),
  size: Size.optional(),
  response_format: ResponseFormat.optional(),
  ...openAiExtras,
});

// Responses (documentation; the handlers build them).

const ImageRef = z.object({ id: z.string(), url: z.string() });
export const ErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});
export const GenerationCreated = z.object({
  id: z.string(),
  object: z.literal("generation"),
  status: z.string(),
});
export const Generation = z.object({
  id: z.string(),
  object: z.literal("generation"),
  status: z.enum(["queued", "running", "succeeded", "failed", "cancelled"]),
  kind: z.string(),
  session_id: z.string().nullable(),
  request: z.record(z.string(), z.unknown()),
  plans: z.array(z.string().nullable()),
  images: z.array(ImageRef.extend({ seed: z.number() })),
  seeds: z.array(z.number()),
  trace: z.array(z.record(z.string(), z.unknown())),
  timings: z.record(z.string(), z.number()),
  error: ErrorBody.shape.error.nullable(),
  created_at: z.number(),
  started_at: z.number().nullable(),
  finished_at: z.number().nullable(),
});
export const Message = z.object({
  id: z.string(),
  object: z.literal("message"),
  role: z.enum(["user", "assistant"]),
  text: z.string(),
  plan: z.string().nullable(),
  image: ImageRef.nullable(),
  mask: ImageRef.nullable(),
  seed: z.number().nullable(),
  generation_id: z.string().nullable(),
  created_at: z.number(),
});
export const Session = z.object({
  id: z.string(),
  object: z.literal("session"),
  title: z.string().nullable(),
  created_at: z.number(),
  messages: z.array(Message),
});
export const SessionDeleted = z.object({
  id: z.string(),
  object: z.literal("session"),
  deleted: z.boolean(),
});
export const OpenAIImagesResponse = z.object({
  created: z.number(),
  data: z.array(
    z.object({ b64_json: z.string().optional(), url: z.string().optional(), revised_prompt: z.string() }),
  ),
});

const article = (word: string) => (/^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`);

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return value.length > 40 ? "text" : JSON.stringify(value);
  if (typeof value === "object") return "an object";
  return String(value);
}

const issueMessage = (issue: z.core.$ZodRawIssue): string | undefined => {
  const input = issue.input;
  switch (issue.code) {
    case "invalid_type":
      if (input === undefined) return "is required";
      if (issue.expected === "int") return `must be an integer, got ${describeValue(input)}`;
      return `must be ${article(issue.expected)}, got ${describeValue(input)}`;
    case "too_big":
      if (issue.origin === "string")
        return `must be at most ${issue.maximum} characters (got ${(input as string).length})`;
      return `must be at most ${issue.maximum}, got ${describeValue(input)}`;
    case "too_small":
      if (issue.origin === "string") return issue.minimum === 1 ? "must not be empty" : undefined;
      return `must be ${issue.inclusive === false ? "greater than" : "at least"} ${issue.minimum}, got ${describeValue(input)}`;
    case "invalid_value":
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}, got ${describeValue(input)}`;
    case "invalid_format":
      return `has the wrong format (got ${describeValue(input)})`;
    case "unrecognized_keys":
      return "is not a recognized field";
    default:
      return undefined;
  }
};

/** Validates a request body; the first problem becomes a 400 naming its field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value, { error: issueMessage });
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0]!] : issue.path;
  const param = path.length ? path.map(String).join(".") : "body";
  throw new AtelierError(`${param}: ${issue.message}`, { status: 400, code: "invalid_value", param });
}
