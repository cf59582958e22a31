/**
 * Loading a latent diffusion model from a folder in the diffusers ONNX layout (model_index.json,
 * scheduler/, text_encoder/, tokenizer/, unet/, vae_encoder/, vae_decoder/), as exported by optimum /
 * diffusers for Stable Diffusion 1.5 and SD-Turbo, or by training/ for the embedded default.
 *
 * Exporters differ, so nothing about the graphs is assumed: input names, element types and ranks are
 * read from each session's metadata (int32 or int64 input_ids; rank-0 or rank-1, float or integer
 * timestep; float16 or float32 tensors; an optional pooled `text_embeds` input; a VAE encoder returning
 * `latent_parameters` (mean ‖ log-variance) or an already-sampled `latent_sample`; a fixed batch size).
 * Each InferenceSession is created once and reused; `dispose()` releases them.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import * as ort from "onnxruntime-node";
import { AtelierError, invalid } from "../src/errors.ts";
import type { NoiseSource } from "./random.ts";
import { loadSchedulerConfig, type SchedulerName, schedulerNameForClass } from "./schedulers/index.ts";

/** Conditioning for one prompt: token states [S × d] and the optional pooled vector [d]. */
export interface Conditioning {
  tokens: Float32Array;
  tokenShape: [number, number];
  pooled?: Float32Array | null;
}

export interface LoadOptions {
  /** Intra-op threads per session (default: all cores, os.availableParallelism()). */
  threads?: number;
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
  /** Check files against manifest.json when the folder has one (default true). */
  verify?: boolean;
}

/** Runs the denoiser with one conditioning batch prepared once (encoder states are not re-uploaded). */
export interface Denoiser {
  readonly batch: number;
  /** `sample` is [batch, C, h, w]; returns the model output, same layout (valid until the next call). */
  run(sample: Float32Array, timestep: number): Promise<Float32Array>;
}

export interface DiffusionModel {
  readonly dir: string;
  readonly modelIndex: Readonly<Record<string, unknown>>;
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
  /** The scheduler named by the folder's config, or dpmpp_2m when that class is not implemented (PNDM). */
  readonly defaultScheduler: SchedulerName;
  readonly latentChannels: number;
  /** Pixels per latent cell along each axis. */
  readonly vaeScaleFactor: number;
  readonly scalingFactor: number;
  readonly shiftFactor: number;
  /** Native resolution (UNet sample_size × vaeScaleFactor). */
  readonly width: number;
  readonly height: number;
  /** Token length and width the UNet expects for encoder_hidden_states, when the graph fixes them. */
  readonly tokenDim: number | null;
  /** Whether the UNet takes a pooled/global conditioning input (SDXL-style `text_embeds`). */
  readonly usesPooled: boolean;
  readonly hasTextEncoder: boolean;
  readonly hasVaeEncoder: boolean;
  encodeText(texts: string[]): Promise<Conditioning[]>;
  createDenoiser(conditionings: Conditioning[], size: { width: number; height: number }): Denoiser;
  /** pixels [B, 3, H, W] in [−1, 1] → scaled latents [B, C, H/f, W/f]; `noise` samples the posterior. */
  encodeImages(
    pixels: Float32Array,
    batch: number,
    height: number,
    width: number,
    noise: NoiseSource,
  ): Promise<Float32Array>;
  /** scaled latents [B, C, h, w] → pixels [B, 3, h·f, w·f] in [−1, 1]. */
  decodeLatents(latents: Float32Array, batch: number, height: number, width: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

function modelError(message: string, param: string | null = null): AtelierError {
  return new AtelierError(message, { status: 500, code: "model_invalid", param });
}

async function readJson(path: string): Promise<Record<string, unknown> | null> {
  if (!existsSync(path)) return null;
  try {
    const value = JSON.parse(await readFile(path, "utf8"));
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not an object");
    return value as Record<string, unknown>;
  } catch (error) {
    throw modelError(`${path}: not a JSON object (${(error as Error).message})`);
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * Verifies the files listed in manifest.json (`files: {path: {sha256}}` or `{path: "hex"}`), naming the
 * first file that is missing or differs.
 */
export async function verifyManifest(dir: string): Promise<number> {
  const manifest = await readJson(join(dir, "manifest.json"));
  if (!manifest) return 0;
  const files = manifest.files as Record<string, unknown> | undefined;
  if (!files || typeof files !== "object") throw modelError(`${dir}/manifest.json has no "files" map`);
  let checked = 0;
  for (const [rel, entry] of Object.entries(files)) {
    const expected = typeof entry === "string" ? entry : (entry as { sha256?: unknown })?.sha256;
    if (typeof expected !== "string") throw modelError(`manifest.json: no sha256 for ${rel}`, rel);
    const path = join(dir, rel);
    if (!existsSync(path)) throw modelError(`model file missing: ${rel} (listed in manifest.json)`, rel);
    const actual = await sha256File(path);
    if (actual !== expected.toLowerCase())
      throw new AtelierError(
        `model file ${rel} does not match manifest.json (sha256 ${actual}, expected ${expected})`,
        {
          status: 500,
          code: "model_integrity",
          param: rel,
        },
      );
    checked++;
  }
  return checked;
}

// ---------------------------------------------------------------------------------------------
// Tensor conversion by declared element type.

type Meta = { name: string; type: string; shape: readonly (number | string)[] };

function metadata(session: ort.InferenceSession, kind: "input" | "output"): Meta[] {
  const list = kind === "input" ? session.inputMetadata : session.outputMetadata;
  return list.map((m) =>
    m.isTensor
      ? { name: m.name, type: m.type, shape: m.shape }
      : { name: m.name, type: "non-tensor", shape: [] },
  );
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → IEEE half bits, round to nearest even. */
function toHalf(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function floatTensor(type: string, data: Float32Array, dims: number[], name: string): ort.Tensor {
  if (type === "float32") return new ort.Tensor("float32", data, dims);
  if (type === "float16") return new ort.Tensor("float16", Uint16Array.from(data, toHalf), dims);
  throw modelError(`input ${name} has element type ${type}; expected float32 or float16`, name);
}

function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === "float32") return tensor.data as Float32Array;
  if (tensor.type === "float16") return Float32Array.from(tensor.data as Uint16Array, fromHalf);
  throw modelError(`output has element type ${tensor.type}; expected float32 or float16`);
}

function numberTensor(type: string, values: number[], dims: number[], name: string): ort.Tensor {
  switch (type) {
    case "float32":
      return new ort.Tensor("float32", Float32Array.from(values), dims);
    case "float16":
      return new ort.Tensor("float16", Uint16Array.from(values, toHalf), dims);
    case "float64":
      return new ort.Tensor("float64", Float64Array.from(values), dims);
    // Integer timesteps truncate, as numpy's astype does in diffusers' ONNX pipelines.
    case "int64":
      return new ort.Tensor(
        "int64",
        BigInt64Array.from(values, (v) => BigInt(Math.trunc(v))),
        dims,
      );
    case "int32":
      return new ort.Tensor("int32", Int32Array.from(values, Math.trunc), dims);
    default:
      throw modelError(`input ${name} has element type ${type}; expected a float or integer type`, name);
  }
}

// ---------------------------------------------------------------------------------------------

async function createSession(path: string, options: LoadOptions): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, {
      intraOpNumThreads: options.threads ?? availableParallelism(),
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: options.graphOptimizationLevel ?? "all",
    });
  } catch (error) {
    throw modelError(`cannot load ${path}: ${(error as Error).message}`);
  }
}

function findInput(metas: Meta[], names: string[], component: string, required = true): Meta | null {
  const found = metas.find((m) => names.includes(m.name));
  if (!found && required)
    throw modelError(
      `${component}/model.onnx has no input ${names.join(" or ")} (inputs: ${metas.map((m) => m.name).join(", ")})`,
    );
  return found ?? null;
}

const numeric = (d: number | string | undefined): number | null =>
  typeof d === "number" && d > 0 ? d : null;

interface TokenizerLike {
  (texts: string[], options: Record<string, unknown>): { input_ids: { data: ArrayLike<bigint | number> } };
  model_max_length?: number;
}

/** Loads a diffusers-ONNX model folder; see the module comment for what adapts to the export. */
export async function loadDiffusionModel(
  dirPath: string,
  options: LoadOptions = {},
): Promise<DiffusionModel> {
  const dir = resolve(dirPath);
  if (options.threads !== undefined && (!Number.isInteger(options.threads) || options.threads < 1))
    throw invalid("threads", `must be a positive integer, got ${options.threads}`);
  const modelIndex = await readJson(join(dir, "model_index.json"));
  if (!modelIndex) throw modelError(`${dir} is not a diffusers model folder (no model_index.json)`, "model");
  if (options.verify !== false) await verifyManifest(dir);

  const schedulerConfig = await loadSchedulerConfig(join(dir, "scheduler", "scheduler_config.json"));
  const defaultScheduler = schedulerNameForClass(schedulerConfig._class_name) ?? "dpmpp_2m";
  const vaeConfig =
    (await readJson(join(dir, "vae_decoder", "config.json"))) ??
    (await readJson(join(dir, "vae", "config.json"))) ??
    (await readJson(join(dir, "vae_encoder", "config.json"))) ??
    {};
  const unetConfig = (await readJson(join(dir, "unet", "config.json"))) ?? {};

  const component = (name: string) => join(dir, name, "model.onnx");
  for (const name of ["unet", "vae_decoder"])
    if (!existsSync(component(name))) throw modelError(`${dir}: missing ${name}/model.onnx`, name);
  const hasTextEncoder = existsSync(component("text_encoder"));
  const hasVaeEncoder = existsSync(component("vae_encoder"));
  const [unet, vaeDecoder, vaeEncoder, textEncoder] = await Promise.all([
    createSession(component("unet"), options),
    createSession(component("vae_decoder"), options),
    hasVaeEncoder ? createSession(component("vae_encoder"), options) : null,
    hasTextEncoder ? createSession(component("text_encoder"), options) : null,
  ]);
  const sessions = [unet, vaeDecoder, vaeEncoder, textEncoder].filter(
    (s): s is ort.InferenceSession => s !== null,
  );

  try {
    // UNet inputs.
    const unetIn = metadata(unet, "input");
    const sampleIn = findInput(unetIn, ["sample"], "unet")!;
    const timestepIn = findInput(unetIn, ["timestep", "timesteps", "t"], "unet")!;
    const hiddenIn = findInput(unetIn, ["encoder_hidden_states"], "unet")!;
    const pooledIn = findInput(unetIn, ["text_embeds"], "unet", false);
    const timeIdsIn = findInput(unetIn, ["time_ids"], "unet", false);
    const unetOutName = unet.outputNames.includes("out_sample") ? "out_sample" : unet.outputNames[0]!;
    const fixedBatch = numeric(sampleIn.shape[0]);
    const cfgNum = (v: unknown) => (typeof v === "number" && v > 0 ? v : null);

    const blocks = vaeConfig.block_out_channels;
    const vaeScaleFactor =
      cfgNum(vaeConfig.downsampling_factor) ?? (Array.isArray(blocks) ? 2 ** (blocks.length - 1) : 8);
    const latentChannels = numeric(sampleIn.shape[1]) ?? cfgNum(vaeConfig.latent_channels) ?? 4;
    const sampleSize = cfgNum(unetConfig.sample_size) ?? numeric(sampleIn.shape[2]) ?? 64;
    const scalingFactor = cfgNum(vaeConfig.scaling_factor) ?? 0.18215;
    const shiftFactor = typeof vaeConfig.shift_factor === "number" ? vaeConfig.shift_factor : 0;
    const tokenDim = numeric(hiddenIn.shape[2]);
    const pooledDim = pooledIn ? numeric(pooledIn.shape[1]) : null;

    // Text encoder and tokenizer (lazy: the LLM path never needs them).
    let tokenizer: TokenizerLike | null = null;
    const textIn = textEncoder ? metadata(textEncoder, "input") : [];
    const idsIn = textEncoder ? findInput(textIn, ["input_ids"], "text_encoder")! : null;
    const loadTokenizer = async (): Promise<TokenizerLike> => {
      if (tokenizer) return tokenizer;
      const tokDir = join(dir, "tokenizer");
      if (!existsSync(join(tokDir, "tokenizer.json")))
        throw modelError(
          `${tokDir}/tokenizer.json is missing (transformers.js needs the fast-tokenizer file)`,
          "tokenizer",
        );
      const { AutoTokenizer, env } = await import("@huggingface/transformers");
      env.allowRemoteModels = false;
      tokenizer = (await AutoTokenizer.from_pretrained(tokDir, {
        local_files_only: true,
      })) as unknown as TokenizerLike;
      return tokenizer;
    };

    const model: DiffusionModel = {
      dir,
      modelIndex,
      schedulerConfig,
      defaultScheduler,
      latentChannels,
      vaeScaleFactor,
      scalingFactor,
      shiftFactor,
      width: sampleSize * vaeScaleFactor,
      height: sampleSize * vaeScaleFactor,
      tokenDim,
      usesPooled: pooledIn !== null,
      hasTextEncoder,
      hasVaeEncoder,

      async encodeText(texts) {
        if (!textEncoder || !idsIn) throw modelError(`${dir} has no text_encoder/model.onnx`, "text_encoder");
        const tok = await loadTokenizer();
        const maxFromTokenizer =
          tok.model_max_length && tok.model_max_length < 100_000 ? tok.model_max_length : 77;
        const length = numeric(idsIn.shape[1]) ?? maxFromTokenizer;
        const encoded = tok(texts, { padding: "max_length", max_length: length, truncation: true });
        const ids = Array.from(encoded.input_ids.data, Number);
        const dims = [texts.length, length];
        const idsTensor =
          idsIn.type === "int32"
            ? new ort.Tensor("int32", Int32Array.from(ids), dims)
            : new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), dims);
        const result = await textEncoder.run({ [idsIn.name]: idsTensor });
        const hiddenName = textEncoder.outputNames.includes("last_hidden_state")
          ? "last_hidden_state"
          : textEncoder.outputNames[0]!;
        const hidden = result[hiddenName]!;
        const [, seq, width] = hidden.dims as number[];
        const states = toFloat32(hidden);
        const pooledOut = result.pooler_output ?? result.text_embeds ?? null;
        const pooled = pooledOut ? toFloat32(pooledOut) : null;
        const pooledWidth = pooledOut ? (pooledOut.dims[1] as number) : 0;
        return texts.map((_, i) => ({
          tokens: states.slice(i * seq! * width!, (i + 1) * seq! * width!),
          tokenShape: [seq!, width!] as [number, number],
          pooled: pooled ? pooled.slice(i * pooledWidth, (i + 1) * pooledWidth) : null,
        }));
      },

      createDenoiser(conditionings, size) {
        const batch = conditionings.length;
        if (batch < 1) throw invalid("conditioning", "at least one conditioning is required");
        const [seq, width] = conditionings[0]!.tokenShape;
        for (const [i, c] of conditionings.entries()) {
          if (c.tokenShape[0] !== seq || c.tokenShape[1] !== width)
            throw invalid(
              "conditioning",
              `item ${i} has token shape ${c.tokenShape.join("×")}, expected ${seq}×${width}`,
            );
          if (c.tokens.length !== seq * width)
            throw invalid(
              "conditioning",
              `item ${i} has ${c.tokens.length} token values, expected ${seq * width}`,
            );
        }
        if (tokenDim !== null && width !== tokenDim)
          throw invalid("conditioning", `token width ${width} does not match the denoiser's ${tokenDim}`);
        const numericSeq = numeric(hiddenIn.shape[1]);
        if (numericSeq !== null && seq !== numericSeq)
          throw invalid("conditioning", `${seq} tokens, but the denoiser takes exactly ${numericSeq}`);
        if (pooledIn) {
          for (const [i, c] of conditionings.entries())
            if (!c.pooled || (pooledDim !== null && c.pooled.length !== pooledDim))
              throw invalid(
                "conditioning",
                `item ${i} needs a pooled vector of ${pooledDim ?? "the model's"} values`,
              );
        }
        const chunk = fixedBatch ?? batch;
        if (batch % chunk !== 0)
          throw invalid(
            "batch",
            `the denoiser export has a fixed batch of ${chunk}; ${batch} does not divide into it`,
          );
        const h = size.height / vaeScaleFactor;
        const w = size.width / vaeScaleFactor;
        const perItem = latentChannels * h * w;
        const timestepDims =
          timestepIn.shape.length === 0 ? [] : [numeric(timestepIn.shape[0]) === 1 ? 1 : chunk];
        const timestepCount = timestepDims.length === 0 ? 1 : timestepDims[0]!;
        // Fixed per generation: encoder states (and pooled / SDXL time ids) for each chunk.
        const chunks = Array.from({ length: batch / chunk }, (_, k) => {
          const items = conditionings.slice(k * chunk, (k + 1) * chunk);
          const hidden = new Float32Array(chunk * seq * width);
          for (const [i, c] of items.entries()) hidden.set(c.tokens, i * seq * width);
          const feeds: Record<string, ort.Tensor> = {
            [hiddenIn.name]: floatTensor(hiddenIn.type, hidden, [chunk, seq, width], hiddenIn.name),
          };
          if (pooledIn) {
            const d = items[0]!.pooled!.length;
            const pooled = new Float32Array(chunk * d);
            for (const [i, c] of items.entries()) pooled.set(c.pooled!, i * d);
            feeds[pooledIn.name] = floatTensor(pooledIn.type, pooled, [chunk, d], pooledIn.name);
          }
          if (timeIdsIn) {
            // SDXL micro-conditioning: original size, crop top-left (0, 0), target size.
            const ids = new Float32Array(chunk * 6);
            for (let i = 0; i < chunk; i++)
              ids.set([size.height, size.width, 0, 0, size.height, size.width], i * 6);
            feeds[timeIdsIn.name] = floatTensor(timeIdsIn.type, ids, [chunk, 6], timeIdsIn.name);
          }
          return feeds;
        });
        const output = chunks.length === 1 ? null : new Float32Array(batch * perItem);
        return {
          batch,
          async run(sample, timestep) {
            if (sample.length !== batch * perItem)
              throw invalid("sample", `expected ${batch * perItem} latent values, got ${sample.length}`);
            const tTensor = numberTensor(
              timestepIn.type,
              new Array<number>(timestepCount).fill(timestep),
              timestepDims,
              timestepIn.name,
            );
            for (let k = 0; k < chunks.length; k++) {
              const part = output ? sample.subarray(k * chunk * perItem, (k + 1) * chunk * perItem) : sample;
              const feeds = {
                ...chunks[k],
                [sampleIn.name]: floatTensor(
                  sampleIn.type,
                  part,
                  [chunk, latentChannels, h, w],
                  sampleIn.name,
                ),
                [timestepIn.name]: tTensor,
              };
              const result = toFloat32((await unet.run(feeds))[unetOutName]!);
              if (!output) return result;
              output.set(result, k * chunk * perItem);
            }
            return output!;
          },
        };
      },

      async encodeImages(pixels, batch, height, width, noise) {
        if (!vaeEncoder)
          throw modelError(
            `${dir} has no vae_encoder/model.onnx (needed for img2img / inpaint)`,
            "vae_encoder",
          );
        const input = metadata(vaeEncoder, "input")[0]!;
        const result = await vaeEncoder.run({
          [input.name]: floatTensor(input.type, pixels, [batch, 3, height, width], input.name),
        });
        const name = vaeEncoder.outputNames.includes("latent_parameters")
          ? "latent_parameters"
          : vaeEncoder.outputNames.includes("latent_sample")
            ? "latent_sample"
            : vaeEncoder.outputNames[0]!;
        const out = result[name]!;
        const data = toFloat32(out);
        const [, channels, h, w] = out.dims as number[];
        const plane = h! * w!;
        const latents = new Float32Array(batch * latentChannels * plane);
        if (channels === 2 * latentChannels) {
          // Diagonal Gaussian posterior (mean ‖ log σ², log-variance clamped to [−30, 20] like diffusers);
          // sample z = μ + σ·ε as diffusers' img2img does (latent_dist.sample(generator)).
          const eps = new Float32Array(latentChannels * plane * batch);
          noise.fillNormal(eps);
          for (let b = 0; b < batch; b++)
            for (let i = 0; i < latentChannels * plane; i++) {
              const mean = data[b * 2 * latentChannels * plane + i]!;
              const logvar = Math.min(
                20,
                Math.max(-30, data[b * 2 * latentChannels * plane + latentChannels * plane + i]!),
              );
              const z = mean + Math.exp(0.5 * logvar) * eps[b * latentChannels * plane + i]!;
              latents[b * latentChannels * plane + i] = (z - shiftFactor) * scalingFactor;
            }
        } else if (channels === latentChannels) {
          for (let i = 0; i < latents.length; i++) latents[i] = (data[i]! - shiftFactor) * scalingFactor;
        } else {
          throw modelError(
            `vae_encoder returns ${channels} channels; expected ${latentChannels} or ${2 * latentChannels}`,
          );
        }
        return latents;
      },

      async decodeLatents(latents, batch, height, width) {
        const input = metadata(vaeDecoder, "input")[0]!;
        const scaled = new Float32Array(latents.length);
        for (let i = 0; i < latents.length; i++) scaled[i] = latents[i]! / scalingFactor + shiftFactor;
        const result = await vaeDecoder.run({
          [input.name]: floatTensor(input.type, scaled, [batch, latentChannels, height, width], input.name),
        });
        const name = vaeDecoder.outputNames.includes("sample") ? "sample" : vaeDecoder.outputNames[0]!;
        return toFloat32(result[name]!);
      },

      async dispose() {
        await Promise.all(sessions.map((s) => s.release()));
      },
    };
    return model;
  } catch (error) {
    await Promise.all(sessions.map((s) => s.release()));
    throw error;
  }
}
