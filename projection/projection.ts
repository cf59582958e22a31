/**
 * The projection runtime: the planner's hidden states of the plan span → conditioning of the frozen denoiser
 * (`C_tokens` [M × d_cond] for cross-attention, `c_global` [d_cond] for the U-Net's `text_embeds`), plus the
 * learned null conditioning that classifier-free guidance runs against.
 *
 * A projection folder (training/projection.py export) holds `model.onnx` (input `hidden_states`
 * [k, S, d_llm]: the manifest's planner layers stacked, and where the manifest has `slots`, `slot_ids` [S]:
 * the object each plan token describes, projection/slots.ts; outputs `encoder_hidden_states` [1, M, d_cond],
 * `text_embeds` [1, d_cond], `null_encoder_hidden_states`, `null_text_embeds`) and `projection.json`, which
 * names the planner and the denoiser it was trained for by the sha256 of their graphs. Loading refuses any
 * other planner or denoiser: the projection's output space only means something to the pair it was trained
 * with. The session is created once; the conditioning of a plan is computed once and reused for every
 * denoising step and every round that reuses the plan (primer: "Projection Layers executed once per sample").
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import * as ort from "onnxruntime-node";
import { z } from "zod";
import type { Conditioning } from "../pipelines/model-folder.ts";
import type { ChatMessage, PlanHiddenStates } from "../planner/planner.ts";
import { AtelierError, invalid } from "../src/errors.ts";
import { planSlots } from "./slots.ts";

const ModelRefSchema = z.object({
  name: z.string().optional(),
  file: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
});

const ManifestSchema = z.object({
  format: z.literal("atelier-projection-v1"),
  d_llm: z.number().int().positive(),
  d_cond: z.number().int().positive(),
  M: z.number().int().positive(),
  k: z.number().int().positive(),
  layers: z.array(z.number().int().nonnegative()).min(1),
  /** Object slot embeddings (projection/slots.ts); absent or 0: the graph takes hidden_states alone. */
  slots: z.number().int().nonnegative().optional(),
  mix_weights: z.array(z.number()).optional(),
  planner: ModelRefSchema.extend({ hidden_size: z.number().int().positive() }),
  denoiser: ModelRefSchema.extend({ cross_attention_dim: z.number().int().positive() }),
  training: z.record(z.string(), z.unknown()).optional(),
  files: z.record(z.string(), z.object({ sha256: z.string() })).optional(),
});

export type ProjectionManifest = z.infer<typeof ManifestSchema>;

/** Conditioning of one plan and the null it is guided against; feeds txt2img/img2img/inpaint directly. */
export interface ProjectedConditioning {
  cond: Conditioning;
  uncond: Conditioning;
}

/**
 * Edit controls from the two streams (primer, "Multi-Stream Conditioning"): `C_tokens` carry what to draw
 * and where, `c_global` how to draw it.
 */
export interface EditControls {
  /** The conditioning of the round being edited. */
  previous?: ProjectedConditioning;
  /** Style lock: keep `previous`'s c_global; C_tokens come from the new plan (a layout re-plan keeps the style). */
  styleLock?: boolean;
  /** Layout lock: keep `previous`'s C_tokens; c_global comes from the new plan (the same scene, restyled). */
  layoutLock?: boolean;
}

/** Anything that names a loaded model's folder: a path, a DiffusionModel / DecoderLLM (`dir`), a Planner. */
export type ModelRef = string | { dir: string } | { llm: { dir: string; hiddenStateLayers?: number[] } };

export interface ProjectionLoadOptions {
  /** The planner the hidden states come from (checked against the manifest's sha256). */
  planner: ModelRef;
  /** The denoiser the conditioning goes to (checked against the manifest's sha256). */
  denoiser: ModelRef & { tokenDim?: number | null };
  /** Intra-op threads of the session (default 1: the graph is tiny). */
  threads?: number;
  /** Plans whose conditioning is kept (least recently used first out; default 64). */
  cacheSize?: number;
}

/** What a planner must offer `condition()`: planner.ts's Planner does. */
export interface HiddenStateSource {
  hiddenStates(messages: ChatMessage[], plan: string, layers?: number[]): Promise<PlanHiddenStates>;
}

function projectionError(message: string, code: string, param: string | null = null): AtelierError {
  return new AtelierError(message, { status: 500, code, param });
}

const hashes = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

/** sha256 of a file, remembered while the file's size and mtime stay the same. */
export async function fileSha256(path: string): Promise<string> {
  const { size, mtimeMs } = statSync(path);
  const known = hashes.get(path);
  if (known && known.size === size && known.mtimeMs === mtimeMs) return known.sha256;
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  const sha256 = hash.digest("hex");
  hashes.set(path, { size, mtimeMs, sha256 });
  return sha256;
}

function refDir(ref: ModelRef): string {
  if (typeof ref === "string") return resolve(ref);
  return resolve("llm" in ref ? ref.llm.dir : ref.dir);
}

function readManifest(dir: string): ProjectionManifest {
  const path = join(dir, "projection.json");
  if (!existsSync(path))
    throw projectionError(`${dir} is not a projection folder (no projection.json)`, "model_missing");
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw projectionError(
      `${path}: not JSON (${(error as Error).message})`,
      "model_invalid",
      "projection.json",
    );
  }
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join(".") || "(root)";
    throw projectionError(`${path}: ${field}: ${issue.message}`, "model_invalid", field);
  }
  const m = parsed.data;
  if (m.layers.length !== m.k) {
    throw projectionError(
      `${path}: layers has ${m.layers.length} entries, k is ${m.k}`,
      "model_invalid",
      "layers",
    );
  }
  return m;
}

/** Refuses a planner or denoiser other than the one the projection was trained for, naming which. */
async function checkModel(
  dir: string,
  which: "planner" | "denoiser",
  ref: ProjectionManifest["planner"] | ProjectionManifest["denoiser"],
  modelDir: string,
): Promise<void> {
  const path = join(modelDir, ref.file);
  if (!existsSync(path)) {
    throw projectionError(
      `projection ${dir} needs the ${which} ${ref.name ?? ""} it was trained for, but ${path} does not exist`,
      "projection_mismatch",
      which,
    );
  }
  const actual = await fileSha256(path);
  if (actual !== ref.sha256) {
    throw projectionError(
      `projection ${dir} was trained for the ${which} ${ref.name ?? ""} whose ${ref.file} has sha256 ` +
        `${ref.sha256.slice(0, 12)}…, but the loaded ${which} (${path}) has ${actual.slice(0, 12)}…; ` +
        `use the matching ${which} or train a projection for this one (training/projection.py)`,
      "projection_mismatch",
      which,
    );
  }
}

const digest = (parts: (string | ArrayBufferView)[]): string => {
  const hash = createHash("sha1");
  for (const part of parts) {
    hash.update(
      typeof part === "string" ? part : new Uint8Array(part.buffer, part.byteOffset, part.byteLength),
    );
    hash.update("\u0000");
  }
  return hash.digest("hex");
};

/** Applies style lock / layout lock: a new object; the inputs are left as they are. */
export function applyEditControls(
  next: ProjectedConditioning,
  controls: EditControls = {},
): ProjectedConditioning {
  const { previous, styleLock = false, layoutLock = false } = controls;
  if (!styleLock && !layoutLock) return next;
  if (styleLock && layoutLock) {
    throw invalid(
      "controls",
      "styleLock and layoutLock together would keep the previous conditioning unchanged",
    );
  }
  if (!previous)
    throw invalid("controls.previous", "styleLock and layoutLock need the previous round's conditioning");
  const [m, d] = next.cond.tokenShape;
  const [pm, pd] = previous.cond.tokenShape;
  if (pm !== m || pd !== d || (previous.cond.pooled?.length ?? -1) !== (next.cond.pooled?.length ?? -1)) {
    throw invalid(
      "controls.previous",
      `has token shape ${pm}×${pd}, expected ${m}×${d} (conditioning of another projection?)`,
    );
  }
  const cond: Conditioning = styleLock
    ? { tokens: next.cond.tokens, tokenShape: [m, d], pooled: previous.cond.pooled ?? null }
    : { tokens: previous.cond.tokens, tokenShape: [m, d], pooled: next.cond.pooled ?? null };
  return { cond, uncond: next.uncond };
}

export class Projection {
  /** Runs of the ONNX graph, plan cache hits and misses (for tests and benchmarks). */
  readonly stats = { runs: 0, hits: 0, misses: 0 };
  private readonly cache = new Map<string, Promise<ProjectedConditioning>>();
  private disposed = false;

  private constructor(
    readonly dir: string,
    readonly manifest: ProjectionManifest,
    private readonly session: ort.InferenceSession,
    private readonly cacheSize: number,
    /** The learned null conditioning (constant; read once at load). */
    readonly uncond: Conditioning,
  ) {}

  /** Loads a projection folder after checking that `planner` and `denoiser` are the models it was trained for. */
  static async load(dirPath: string, options: ProjectionLoadOptions): Promise<Projection> {
    const dir = resolve(dirPath);
    const manifest = readManifest(dir);
    for (const [file, entry] of Object.entries(manifest.files ?? {})) {
      const path = join(dir, file);
      if (!existsSync(path))
        throw projectionError(`${dir}: missing ${file} (listed in projection.json)`, "model_missing", file);
      const actual = await fileSha256(path);
      if (actual !== entry.sha256) {
        throw projectionError(
          `${path} does not match projection.json (sha256 ${actual.slice(0, 12)}…, expected ${entry.sha256.slice(0, 12)}…)`,
          "model_integrity",
          file,
        );
      }
    }
    await checkModel(dir, "planner", manifest.planner, refDir(options.planner));
    await checkModel(dir, "denoiser", manifest.denoiser, refDir(options.denoiser));
    const planner = options.planner;
    const tapped =
      typeof planner === "object" && "llm" in planner ? planner.llm.hiddenStateLayers : undefined;
    const missing = tapped ? manifest.layers.filter((l) => !tapped.includes(l)) : [];
    if (missing.length > 0) {
      throw projectionError(
        `projection ${dir} reads planner layers ${manifest.layers.join(", ")}, but the planner graph returns ` +
          `hidden states of ${tapped!.join(", ") || "none"}`,
        "projection_mismatch",
        "planner",
      );
    }
    const tokenDim = typeof options.denoiser === "object" ? options.denoiser.tokenDim : null;
    if (tokenDim != null && tokenDim !== manifest.d_cond) {
      throw projectionError(
        `projection ${dir} outputs ${manifest.d_cond}-wide tokens; the denoiser takes ${tokenDim}`,
        "projection_mismatch",
        "denoiser",
      );
    }
    const cacheSize = options.cacheSize ?? 64;
    if (!Number.isInteger(cacheSize) || cacheSize < 0)
      throw invalid("cacheSize", `must be an integer ≥ 0, got ${cacheSize}`);
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1)
      throw invalid("threads", `must be a positive integer, got ${threads}`);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(join(dir, "model.onnx"), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: "sequential",
      });
    } catch (error) {
      throw projectionError(
        `cannot load ${join(dir, "model.onnx")}: ${(error as Error).message}`,
        "model_invalid",
      );
    }
    const outputs = [
      "encoder_hidden_states",
      "text_embeds",
      "null_encoder_hidden_states",
      "null_text_embeds",
    ];
    const absent = outputs.filter((name) => !session.outputNames.includes(name));
    const inputs = manifest.slots ? ["hidden_states", "slot_ids"] : ["hidden_states"];
    const unmet = [...absent, ...inputs.filter((name) => !session.inputNames.includes(name))];
    if (unmet.length > 0) {
      await session.release();
      throw projectionError(
        `${dir}/model.onnx must take ${inputs.join(" and ")} and return ${outputs.join(", ")} (missing: ${unmet.join(", ")})`,
        "model_invalid",
      );
    }
    // The null outputs do not depend on the input: one run on a 1-token plan reads them.
    const probe = await session.run({
      hidden_states: new ort.Tensor("float32", new Float32Array(manifest.k * manifest.d_llm), [
        manifest.k,
        1,
        manifest.d_llm,
      ]),
      ...(manifest.slots ? { slot_ids: new ort.Tensor("int64", new BigInt64Array(1), [1]) } : {}),
    });
    const uncond = {
      tokens: (probe.null_encoder_hidden_states!.data as Float32Array).slice(),
      tokenShape: [manifest.M, manifest.d_cond] as [number, number],
      pooled: (probe.null_text_embeds!.data as Float32Array).slice(),
    };
    if (uncond.tokens.length !== manifest.M * manifest.d_cond || uncond.pooled.length !== manifest.d_cond) {
      await session.release();
      throw projectionError(
        `${dir}/model.onnx: output shapes differ from projection.json (M, d_cond)`,
        "model_invalid",
      );
    }
    return new Projection(dir, manifest, session, cacheSize, uncond);
  }

  /** The planner layers the graph takes, in order: ask the planner for exactly these. */
  get layers(): number[] {
    return [...this.manifest.layers];
  }

  /** Conditioning of a plan's hidden states; cached by their content. */
  async project(hidden: PlanHiddenStates, controls?: EditControls): Promise<ProjectedConditioning> {
    this.checkHidden(hidden);
    const key = digest(["states", hidden.layers.join(","), String(hidden.length), ...hidden.states]);
    return applyEditControls(await this.cached(key, () => this.run(hidden)), controls);
  }

  /**
   * Conditioning of `plan` in a conversation: the planner's forward pass over the conversation + plan, sliced
   * to the plan span, then the projection. Cached by (conversation, plan): a plan reused across denoising
   * steps, images or critique rounds costs one LLM pass and one projection run.
   */
  async condition(
    planner: HiddenStateSource,
    messages: ChatMessage[],
    plan: string,
    controls?: EditControls,
  ): Promise<ProjectedConditioning> {
    const key = digest(["plan", JSON.stringify(messages.map((m) => [m.role, m.content])), plan]);
    const result = await this.cached(key, async () => {
      const hidden = await planner.hiddenStates(messages, plan, this.layers);
      this.checkHidden(hidden);
      return this.run(hidden);
    });
    return applyEditControls(result, controls);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.cache.clear();
    await this.session.release();
  }

  private cached(key: string, compute: () => Promise<ProjectedConditioning>): Promise<ProjectedConditioning> {
    if (this.disposed) throw projectionError("the projection has been disposed", "disposed");
    const hit = this.cache.get(key);
    if (hit) {
      this.stats.hits++;
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    this.stats.misses++;
    const result = compute();
    if (this.cacheSize > 0) {
      this.cache.set(key, result);
      result.catch(() => this.cache.delete(key));
      while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    }
    return result;
  }

  private checkHidden(hidden: PlanHiddenStates): void {
    const { layers, d_llm } = this.manifest;
    if (hidden.layers.join(",") !== layers.join(",")) {
      throw invalid(
        "hiddenStates.layers",
        `must be planner layers ${layers.join(", ")} in order, got ${hidden.layers.join(", ")}`,
      );
    }
    if (hidden.hiddenSize !== d_llm) {
      throw invalid(
        "hiddenStates.hiddenSize",
        `must be ${d_llm} (the planner the projection was trained for), got ${hidden.hiddenSize}`,
      );
    }
    if (!Number.isInteger(hidden.length) || hidden.length < 1) {
      throw invalid(
        "hiddenStates.length",
        `must be a positive integer (tokens of the plan span), got ${hidden.length}`,
      );
    }
    hidden.states.forEach((s, i) => {
      if (s.length !== hidden.length * d_llm) {
        throw invalid(
          `hiddenStates.states.${i}`,
          `has ${s.length} values, expected ${hidden.length}×${d_llm}`,
        );
      }
    });
    if (this.manifest.slots && hidden.tokens?.length !== hidden.length) {
      throw invalid(
        "hiddenStates.tokens",
        `must hold the plan span's ${hidden.length} tokens as text (this projection reads their object slots)`,
      );
    }
    if (hidden.states.length !== layers.length) {
      throw invalid(
        "hiddenStates.states",
        `has ${hidden.states.length} matrices for ${layers.length} layers`,
      );
    }
  }

  private async run(hidden: PlanHiddenStates): Promise<ProjectedConditioning> {
    const { k, d_llm, M, d_cond } = this.manifest;
    const size = hidden.length * d_llm;
    const input = new Float32Array(k * size);
    hidden.states.forEach((s, i) => {
      input.set(s, i * size);
    });
    if (this.disposed) throw projectionError("the projection has been disposed", "disposed");
    this.stats.runs++;
    const feeds: Record<string, ort.Tensor> = {
      hidden_states: new ort.Tensor("float32", input, [k, hidden.length, d_llm]),
    };
    if (this.manifest.slots) {
      const slots = planSlots(hidden.tokens, this.manifest.slots).map(BigInt);
      feeds.slot_ids = new ort.Tensor("int64", BigInt64Array.from(slots), [hidden.length]);
    }
    const out = await this.session.run(feeds, ["encoder_hidden_states", "text_embeds"]);
    const cond: Conditioning = {
      tokens: (out.encoder_hidden_states!.data as Float32Array).slice(),
      tokenShape: [M, d_cond],
      pooled: (out.text_embeds!.data as Float32Array).slice(),
    };
    return { cond, uncond: this.uncond };
  }
}

/** `Projection.load`: a projection folder, checked against the planner and denoiser it will run with. */
export function loadProjection(dir: string, options: ProjectionLoadOptions): Promise<Projection> {
  return Projection.load(dir, options);
}
