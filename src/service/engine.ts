/**
 * What the service asks of an image engine. The HTTP layer, the job queue and storage only see this
 * interface, so the critique-loop agent (issue 8) replaces the first engine without touching the service.
 *
 * Engines report progress through `onEvent`; the service adds `queued`, `done` and `error` itself (they
 * belong to the job, not to the engine), numbers the events, stores them and streams them to clients.
 */
import type { Mask, RgbImage } from "../../pipelines/image.ts";
import { AtelierError } from "../errors.ts";

/** Generation settings shared by fresh generations and edits (already validated by the routes). */
export interface Settings {
  /** uint32; image i uses seed + i. Absent: a random seed, reported back. */
  seed?: number;
  steps?: number;
  guidance?: number;
  sampler?: string;
  /** Maximum critique rounds (engines without a critic run one). */
  rounds?: number;
  negative?: string;
  /** Images to make, 1..4. */
  n?: number;
  /** Attach a PNG preview (base64) to every step event. */
  preview?: boolean;
}

export interface GenerateRequest extends Settings {
  /** Exactly one of prompt and plan: a request in words, or a plan in the plan format. */
  prompt?: string;
  plan?: string;
}

/** Progress an engine reports; `step` is 1-based. */
export type EngineEvent =
  | { type: "planning"; round: number }
  | { type: "plan"; round: number; plan: string; caption?: string }
  /** The plan's conditioning is ready (the agent's condition node); `lock`: the stream an edit kept. */
  | { type: "conditioning"; round: number; via: "projection" | "text_encoder"; lock?: EditLock }
  | { type: "step"; round: number; step: number; steps: number; preview?: string }
  | { type: "describing"; round: number }
  | { type: "critique"; round: number; agreement: number; critique: string }
  | { type: "revised"; round: number; plan: string };

export type EngineEventType = EngineEvent["type"];

export interface RunContext {
  onEvent: (event: EngineEvent) => void;
  signal: AbortSignal;
  /** The generation's id (the agent keys its loop's checkpoints by it); engines make one up when absent. */
  id?: string;
}

/** One round of the generate → describe → critique → revise loop. */
export interface TraceRound {
  round: number;
  /** The plan the round rendered (null for engines without a planner: the prompt went to the text encoder). */
  plan: string | null;
  /** The plan's scene in words (what the text encoder saw on the caption path). */
  caption?: string;
  /** How the plan became conditioning. */
  conditioning?: "projection" | "text_encoder";
  /** What the text encoder read, where a critique round took that route: the plan's caption or the request. */
  encoded?: string;
  /** txt2img, img2img or inpaint. */
  mode: "txt2img" | "img2img" | "inpaint";
  seeds: number[];
  settings: { steps: number; guidance: number; sampler: string; strength?: number };
  images: RgbImage[];
  /** Set by engines with a critic. */
  critique?: { agreement: number; text: string; data?: unknown } | null;
  /** Edits: how the round keeps what the edit did not ask to change (src/agent/edit-strategy.ts). */
  edit?: { strategy: string; reason: string; cells?: string[] };
  /**
   * A critique round that repaired an earlier round's image (src/agent/cell-repair.ts): the round it
   * started from, the cells repainted, and the plan of each inpainting pass.
   */
  repair?: { from: number; cells: string[]; plans: string[]; reason: string };
  /** Milliseconds per stage; the agent's per node (plan or revise, condition, sample, describe, critique). */
  timings: Record<string, number>;
}

/**
 * A generation that failed after it had begun: the failure (message, status and code of the cause, the
 * round and node it happened in) and the trace of the rounds that finished, which the service stores.
 */
export class GenerationFailedError extends AtelierError {
  constructor(
    message: string,
    options: { status: number; code: string; param?: string | null },
    readonly trace: TraceRound[],
    readonly round: number,
    readonly node: string,
  ) {
    super(message, options);
  }
}

export interface GenerateResult {
  /** The plan behind each image (what OpenAI clients receive as revised_prompt). */
  plans: (string | null)[];
  images: RgbImage[];
  /**
   * The seed of each image: the one it was sampled with, or for an image a critique round repaired, the
   * seed of the image whose layout it kept (an edit that keeps the seed then keeps the layout).
   */
  seeds: number[];
  trace: TraceRound[];
  /** Milliseconds per stage, plus `total`. */
  timings: Record<string, number>;
}

/** One earlier turn of a session, as the engine needs it. */
export interface SessionTurn {
  role: "user" | "assistant";
  text: string;
  /** Assistant turns: the plan their image was made from. */
  plan?: string | null;
}

/** What an edit starts from: the conversation so far and the session's current image. */
export interface SessionState {
  history: SessionTurn[];
  image: RgbImage | null;
  /** Seed and sampler of the current image (an edit keeps them unless told otherwise). */
  seed: number | null;
  sampler: string | null;
  plan: string | null;
}

export interface EditMessage {
  text: string;
  /** Replaces the session's current image as the starting point. */
  image?: RgbImage;
  /** 255 = repaint, 0 = keep; the size of the starting image. */
  mask?: Mask;
}

/**
 * Keep one stream of the session image's projection conditioning (primer, "Multi-Stream Conditioning"):
 * `layout` keeps its object tokens C_tokens (what and where) and takes c_global (how) from the edit's plan;
 * `style` keeps c_global and takes the object tokens from the edit's plan (a layout re-plan in the same style).
 */
export const EDIT_LOCKS = ["layout", "style"] as const;
export type EditLock = (typeof EDIT_LOCKS)[number];

export interface EditSettings extends Settings {
  /** img2img strength in (0, 1]. */
  strength?: number;
  /** Engines with projection layers only. */
  lock?: EditLock;
}

export interface EngineInfo {
  name: string;
  /** Output sizes the engine makes, e.g. [{width: 64, height: 64}]. */
  sizes: { width: number; height: number }[];
  samplers: string[];
  defaultSampler: string;
  /** Whether the engine re-describes and critiques its images (rounds > 1 do something). */
  critique: boolean;
  /** Whether a planner LLM writes the plans. */
  planner: boolean;
  /** Whether edits take a `lock` (EditSettings): the engine conditions plans through projection layers. */
  locks: boolean;
}

export interface Engine {
  readonly info: EngineInfo;
  generate(request: GenerateRequest, context: RunContext): Promise<GenerateResult>;
  edit(
    state: SessionState,
    message: EditMessage,
    settings: EditSettings,
    context: RunContext,
  ): Promise<GenerateResult>;
  dispose(): Promise<void>;
}
