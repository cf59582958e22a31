/**
 * What every scheduler shares: the diffusers config machinery (keys, defaults, validation), the beta
 * schedules, timestep spacings and the sigma helpers of the k-diffusion family.
 *
 * Numbers follow diffusers on CPU: betas, alphas_cumprod and sigmas are stored as float32 exactly where
 * diffusers keeps float32 tensors (torch.linspace in float32, cumprod accumulated in double then rounded,
 * numpy interpolation in float64), and per-element updates are computed in float64 and stored in float32,
 * so results agree with diffusers to float32 rounding (a few ulps), not bit for bit.
 */
import { AtelierError, invalid } from "../../src/errors.ts";
import { type NoiseSource, PhiloxNormal, randomSeed, STREAM } from "../random.ts";

export type SchedulerName = "ddpm" | "ddim" | "euler" | "euler_ancestral" | "dpmpp_2m" | "lcm";
export type PredictionType = "epsilon" | "v_prediction" | "sample";

export interface StepOptions {
  /** DDIM's η (0 = deterministic DDIM, 1 = DDPM-like variance); ignored by the other schedulers. */
  eta?: number;
  /** Noise for stochastic steps (DDPM, DDIM with η > 0, Euler ancestral, LCM multi-step). */
  generator?: NoiseSource;
  /** Where to write prevSample; may be `sample` itself (updates are element-wise). */
  out?: Float32Array;
}

export interface StepResult {
  prevSample: Float32Array;
  /** x̂₀ of this step; a buffer owned by the scheduler, overwritten by the next step(). */
  predOriginalSample?: Float32Array;
}

export interface Scheduler {
  readonly name: SchedulerName;
  readonly config: Readonly<Record<string, unknown>>;
  /** Model evaluations per entry of `timesteps` (1 for every scheduler here). */
  readonly order: number;
  timesteps: number[];
  readonly initNoiseSigma: number;
  setTimesteps(numInferenceSteps: number): void;
  /** First entry of `timesteps` actually used (img2img / inpaint start part-way, diffusers' set_begin_index). */
  setBeginIndex(index: number): void;
  /** Input scaling for the denoiser; returns `sample` itself when the scheduler needs none. */
  scaleModelInput(sample: Float32Array, t: number, out?: Float32Array): Float32Array;
  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts?: StepOptions): StepResult;
  /** Forward process q(x_t | x_0) at timestep t (img2img start, inpaint re-noising). */
  addNoise(original: Float32Array, noise: Float32Array, t: number, out?: Float32Array): Float32Array;
}

export const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------
// Config: diffusers keys, per-scheduler defaults, validation.

type Validator = (value: unknown, field: string) => unknown;

export interface KeySpec {
  default: unknown;
  check: Validator;
}

const field = (key: string) => `scheduler_config.${key}`;

export const int =
  (min: number, max = Number.MAX_SAFE_INTEGER): Validator =>
  (v, key) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
      throw invalid(field(key), `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
    return v;
  };

export const num =
  (min = -Infinity, max = Infinity): Validator =>
  (v, key) => {
    // JSON has no -Infinity; diffusers writes lambda_min_clipped = -inf as the string "-inf" or a huge negative.
    if (v === "-inf" || v === "-Infinity") v = -Infinity;
    if (typeof v !== "number" || Number.isNaN(v) || v < min || v > max)
      throw invalid(field(key), `must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
    return v;
  };

export const bool: Validator = (v, key) => {
  if (typeof v !== "boolean") throw invalid(field(key), `must be true or false, got ${JSON.stringify(v)}`);
  return v;
};

export const oneOf =
  (...values: (string | null)[]): Validator =>
  (v, key) => {
    if (!values.includes(v as string | null))
      throw invalid(
        field(key),
        `must be one of ${values.map((x) => JSON.stringify(x)).join(", ")}, got ${JSON.stringify(v)}`,
      );
    return v;
  };

export const nullableNum =
  (min = 0): Validator =>
  (v, key) =>
    v === null ? null : num(min)(v, key);

/** A diffusers option Atelier does not implement: accepted only at its default value. */
export const only =
  (value: unknown): Validator =>
  (v, key) => {
    if (v !== value)
      throw invalid(
        field(key),
        `only ${JSON.stringify(value)} is supported by Atelier, got ${JSON.stringify(v)}`,
      );
    return v;
  };

const trainedBetas: Validator = (v, key) => {
  if (v === null) return null;
  if (!Array.isArray(v) || v.length < 2 || !v.every((b) => typeof b === "number" && b >= 0 && b < 1))
    throw invalid(field(key), "must be null or an array of betas in [0, 1)");
  return v;
};

/** Keys every scheduler here understands, with diffusers' defaults where they agree across schedulers. */
export const COMMON_KEYS: Record<string, KeySpec> = {
  num_train_timesteps: { default: 1000, check: int(2, 100_000) },
  beta_start: { default: 0.0001, check: num(0, 1) },
  beta_end: { default: 0.02, check: num(0, 1) },
  beta_schedule: { default: "linear", check: oneOf("linear", "scaled_linear", "squaredcos_cap_v2") },
  trained_betas: { default: null, check: trainedBetas },
  prediction_type: { default: "epsilon", check: oneOf("epsilon", "v_prediction", "sample") },
  timestep_spacing: { default: "leading", check: oneOf("leading", "trailing", "linspace") },
  steps_offset: { default: 0, check: int(0, 1000) },
  rescale_betas_zero_snr: { default: false, check: bool },
};

/**
 * Keys of other diffusers schedulers (or of options a given scheduler ignores): accepted and ignored, as
 * diffusers' from_config does when a config is reused across scheduler classes (e.g. SD 1.5's PNDM
 * config loaded into Euler). Anything outside COMMON_KEYS, the scheduler's own keys and this list is
 * rejected, naming the key.
 */
const IGNORED_KEYS = new Set([
  "_class_name",
  "_diffusers_version",
  "_use_default_values",
  "predict_epsilon",
  "skip_prk_steps",
  "set_alpha_to_one",
  "clip_sample",
  "clip_sample_range",
  "thresholding",
  "dynamic_thresholding_ratio",
  "sample_max_value",
  "variance_type",
  "interpolation_type",
  "use_karras_sigmas",
  "use_exponential_sigmas",
  "use_beta_sigmas",
  "use_lu_lambdas",
  "use_flow_sigmas",
  "flow_shift",
  "sigma_min",
  "sigma_max",
  "timestep_type",
  "final_sigmas_type",
  "solver_order",
  "algorithm_type",
  "solver_type",
  "lower_order_final",
  "euler_at_final",
  "lambda_min_clipped",
  "original_inference_steps",
  "timestep_scaling",
  "use_dynamic_shifting",
  "time_shift_type",
  "disable_corrector",
  "solver_p",
  "predict_x0",
  "sigma_data",
  "rho",
  "s_noise",
  "shift",
  "base_shift",
  "max_shift",
  "base_image_seq_len",
  "max_image_seq_len",
  "invert_sigmas",
  "shift_terminal",
  "stochastic_sampling",
  "noise_sampler_seed",
  "clip_denoised",
  "num_vq_embeddings",
  "lambda_min",
  "lambda_max",
]);

/** Resolves a diffusers config for one scheduler: its defaults, then the given keys, each validated. */
export function resolveConfig(
  name: SchedulerName,
  input: Record<string, unknown>,
  keys: Record<string, KeySpec>,
): Record<string, unknown> {
  if (input === null || typeof input !== "object" || Array.isArray(input))
    throw invalid("scheduler_config", "must be a JSON object of diffusers scheduler keys");
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(keys)) out[key] = spec.default;
  for (const [key, value] of Object.entries(input)) {
    const spec = keys[key];
    if (spec) out[key] = spec.check(value, key);
    else if (!IGNORED_KEYS.has(key))
      throw invalid(field(key), `unknown scheduler config key "${key}" (scheduler ${name})`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// numpy / torch numerics that the spacings depend on.

/** numpy's round(): halves go to the even neighbour (np.round(812.5) = 812, not 813). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num) in float64 (endpoint included). */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  const step = div > 0 ? (stop - start) / div : 0;
  const out = Array.from({ length: num }, (_, i) => start + i * step);
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) in float64: length ceil((stop - start) / step), values start + i·step. */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  return Array.from({ length: len }, (_, i) => start + i * step);
}

/**
 * torch.linspace(start, end, n, dtype=float32) as torch's AVX2 CPU kernel computes it, bit for bit: a
 * float32 step; blocks of 8 lanes (processed in pairs, the tail element-wise) start from
 * start + step·i (first half) or end − step·(n−1−i) (second half) with a fused multiply-add, and lane j
 * adds float32(step·j) to the block base.
 */
export function torchLinspaceF32(start: number, end: number, n: number): Float32Array {
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  const base = (i: number) => (i < half ? f32(s + step * i) : f32(e - step * (n - i - 1)));
  const out = new Float32Array(n);
  const width = 8;
  let i = 0;
  for (; i <= n - 2 * width; i += width) {
    const b = base(i);
    for (let j = 0; j < width; j++) out[i + j] = f32(b + f32(step * j));
  }
  for (; i < n; i++) out[i] = base(i);
  return out;
}

/** np.interp(x, arange(len(ys)), ys) in float64. */
export function interpIndex(x: number, ys: ArrayLike<number>): number {
  if (x <= 0) return ys[0]!;
  const last = ys.length - 1;
  if (x >= last) return ys[last]!;
  const i = Math.floor(x);
  const w = x - i;
  return w === 0 ? ys[i]! : ys[i]! + (ys[i + 1]! - ys[i]!) * w;
}

// ---------------------------------------------------------------------------------------------
// Noise schedules.

/** Glide's cosine schedule ᾱ(t) = cos²((t + 0.008) / 1.008 · π/2), betas capped at 0.999 (Nichol & Dhariwal 2021). */
function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return out;
}

/**
 * Rescales betas so the last timestep has zero SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and
 * Sample Steps are Flawed", Algorithm 1): shift √ᾱ so its last value is 0, rescale so its first is unchanged.
 */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const sqrtBar = new Float32Array(n);
  let acc = 1;
  for (let i = 0; i < n; i++) {
    acc *= f32(1 - betas[i]!);
    sqrtBar[i] = Math.sqrt(f32(acc));
  }
  const first = sqrtBar[0]!;
  const last = sqrtBar[n - 1]!;
  const scale = f32(first / f32(first - last));
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32(sqrtBar[i]! - last) * scale);
    bar[i] = f32(v * v);
  }
  const out = new Float32Array(n);
  out[0] = f32(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32(bar[i]! / bar[i - 1]!));
  return out;
}

export function makeBetas(config: Record<string, unknown>): Float32Array {
  const n = config.num_train_timesteps as number;
  const trained = config.trained_betas as number[] | null;
  let betas: Float32Array;
  if (trained) {
    if (trained.length !== n)
      throw invalid(field("trained_betas"), `has ${trained.length} betas but num_train_timesteps is ${n}`);
    betas = Float32Array.from(trained);
  } else if (config.beta_schedule === "linear") {
    betas = torchLinspaceF32(config.beta_start as number, config.beta_end as number, n);
  } else if (config.beta_schedule === "scaled_linear") {
    // Latent diffusion's schedule: linear in √β, then squared.
    betas = torchLinspaceF32(Math.sqrt(config.beta_start as number), Math.sqrt(config.beta_end as number), n);
    for (let i = 0; i < n; i++) betas[i] = f32(betas[i]! * betas[i]!);
  } else {
    betas = betasForAlphaBar(n);
  }
  return config.rescale_betas_zero_snr ? rescaleZeroTerminalSnr(betas) : betas;
}

/** ᾱ_t = Π_{s≤t} (1 − β_s); torch's CPU cumprod accumulates float32 in double and rounds each output. */
export function cumprodAlphas(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f32(1 - betas[i]!);
    out[i] = acc;
  }
  return out;
}

/** Training sigmas of the VE view, σ_t = √((1 − ᾱ_t) / ᾱ_t), computed in float32 like torch. */
export function trainingSigmas(alphasCumprod: Float32Array): Float32Array {
  const out = new Float32Array(alphasCumprod.length);
  for (let i = 0; i < out.length; i++) {
    const a = alphasCumprod[i]!;
    out[i] = Math.sqrt(f32(f32(1 - a) / a));
  }
  return out;
}

/**
 * Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models", eq. 5):
 * σ_i = (σ_max^{1/ρ} + i/(n−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ with ρ = 7.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Exponential (log-uniform) sigmas from σ_max down to σ_min. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  return npLinspace(Math.log(sigmaMax), Math.log(sigmaMin), n).map(Math.exp);
}

/**
 * Fractional timestep of a sigma: piecewise-linear interpolation of log σ over the training log-sigmas
 * (diffusers' _sigma_to_t; log_sigmas are float32 there because numpy keeps the float32 dtype).
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low]!;
  const hi = logSigmas[low + 1]!;
  const w = Math.min(1, Math.max(0, (lo - logSigma) / (lo - hi)));
  return (1 - w) * low + w * (low + 1);
}

export function logOf(sigmas: Float32Array): Float32Array {
  return sigmas.map((s) => Math.log(s));
}

// ---------------------------------------------------------------------------------------------
// Shared state and helpers of the schedulers.

export function checkStepCount(n: number, numTrain: number): void {
  if (!Number.isInteger(n) || n < 1 || n > numTrain)
    throw invalid("steps", `must be an integer in [1, ${numTrain}] (num_train_timesteps), got ${n}`);
}

export function notReady(name: SchedulerName): AtelierError {
  return new AtelierError(`${name} scheduler: call setTimesteps(numInferenceSteps) before step()`, {
    status: 500,
    code: "scheduler_not_ready",
  });
}

export function sameLength(name: string, a: Float32Array, b: Float32Array): void {
  if (a.length !== b.length)
    throw invalid(name, `has ${a.length} values but the sample has ${b.length}; they must match`);
}

export function outBuffer(opts: { out?: Float32Array } | undefined, length: number): Float32Array {
  const out = opts?.out;
  if (out && out.length !== length) throw invalid("out", `has ${out.length} values, expected ${length}`);
  return out ?? new Float32Array(length);
}

/** Reuses `buf` when it has the right size (scheduler-owned scratch buffers). */
export function scratch(buf: Float32Array | null, length: number): Float32Array {
  return buf && buf.length === length ? buf : new Float32Array(length);
}

/** x̂₀ from a model output under the VP parameterisation x_t = √ᾱ·x₀ + √(1−ᾱ)·ε (DDPM eq. 15; v: Salimans & Ho 2022). */
export function predictX0(
  type: PredictionType,
  modelOutput: number,
  sample: number,
  sqrtAlpha: number,
  sqrtBeta: number,
): number {
  if (type === "epsilon") return (sample - sqrtBeta * modelOutput) / sqrtAlpha;
  if (type === "v_prediction") return sqrtAlpha * sample - sqrtBeta * modelOutput;
  return modelOutput;
}

/** diffusers' index_for_timestep: the second match when the timestep repeats (so img2img does not skip a sigma). */
export function indexForTimestep(timesteps: number[], t: number, fallbackToLast = false): number {
  const hits: number[] = [];
  timesteps.forEach((v, i) => {
    if (v === t) hits.push(i);
  });
  if (hits.length === 0) {
    if (fallbackToLast) return timesteps.length - 1;
    throw invalid("timestep", `${t} is not one of the scheduler's timesteps`);
  }
  return hits.length > 1 ? hits[1]! : hits[0]!;
}

interface NoiseTables {
  betas: Float32Array;
  alphasCumprod: Float32Array;
  sigmas?: { train: Float32Array; log: Float32Array };
}

/** Tables depend only on the schedule keys; schedulers are created per request, so they are memoised. */
const TABLE_CACHE = new Map<string, NoiseTables>();

function noiseTables(config: Record<string, unknown>): NoiseTables {
  const key = JSON.stringify(
    [
      "num_train_timesteps",
      "beta_start",
      "beta_end",
      "beta_schedule",
      "trained_betas",
      "rescale_betas_zero_snr",
    ].map((k) => config[k]),
  );
  let tables = TABLE_CACHE.get(key);
  if (!tables) {
    const betas = makeBetas(config);
    tables = { betas, alphasCumprod: cumprodAlphas(betas) };
    if (TABLE_CACHE.size >= 32) TABLE_CACHE.delete(TABLE_CACHE.keys().next().value!);
    TABLE_CACHE.set(key, tables);
  }
  return tables;
}

/** Training σ and log σ for an ᾱ table (memoised with it). */
export function sigmaTables(alphasCumprod: Float32Array): { train: Float32Array; log: Float32Array } {
  for (const tables of TABLE_CACHE.values())
    if (tables.alphasCumprod === alphasCumprod) {
      if (!tables.sigmas) {
        const train = trainingSigmas(alphasCumprod);
        tables.sigmas = { train, log: logOf(train) };
      }
      return tables.sigmas;
    }
  const train = trainingSigmas(alphasCumprod);
  return { train, log: logOf(train) };
}

/** Shared base: config, ᾱ table, timesteps, diffusers' step_index / begin_index bookkeeping. */
export abstract class BaseScheduler {
  abstract readonly name: SchedulerName;
  readonly order = 1;
  readonly config: Readonly<Record<string, unknown>>;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  numInferenceSteps: number | null = null;
  protected stepIndex: number | null = null;
  protected beginIndex: number | null = null;
  protected x0Buffer: Float32Array | null = null;
  protected noiseBuffer: Float32Array | null = null;

  constructor(config: Record<string, unknown>) {
    this.config = Object.freeze(config);
    const tables = noiseTables(config);
    this.betas = tables.betas;
    this.alphasCumprod = tables.alphasCumprod;
  }

  get numTrainTimesteps(): number {
    return this.config.num_train_timesteps as number;
  }

  get predictionType(): PredictionType {
    return this.config.prediction_type as PredictionType;
  }

  get initNoiseSigma(): number {
    return 1;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  /** Resets the step counter; set_timesteps in diffusers does the same. */
  protected resetIndices(): void {
    this.stepIndex = null;
    this.beginIndex = null;
  }

  protected initStepIndex(t: number, fallbackToLast = false): number {
    if (this.stepIndex === null)
      this.stepIndex = this.beginIndex ?? indexForTimestep(this.timesteps, t, fallbackToLast);
    return this.stepIndex;
  }

  protected requireTimesteps(): void {
    if (this.numInferenceSteps === null) throw notReady(this.name);
  }

  protected alphaAt(t: number): number {
    const i = Math.trunc(t);
    if (i < 0 || i >= this.alphasCumprod.length)
      throw invalid("timestep", `${t} is outside [0, ${this.alphasCumprod.length - 1}]`);
    return this.alphasCumprod[i]!;
  }

  protected x0Scratch(length: number): Float32Array {
    this.x0Buffer = scratch(this.x0Buffer, length);
    return this.x0Buffer;
  }

  protected noise(generator: NoiseSource | undefined, length: number): Float32Array {
    this.noiseBuffer = scratch(this.noiseBuffer, length);
    (generator ?? defaultNoise()).fillNormal(this.noiseBuffer);
    return this.noiseBuffer;
  }

  scaleModelInput(sample: Float32Array, _t: number, _out?: Float32Array): Float32Array {
    return sample;
  }

  /** DDPM forward process q(x_t | x₀) = N(√ᾱ_t·x₀, (1 − ᾱ_t)·I) (Ho et al. 2020, eq. 4). */
  addNoise(original: Float32Array, noise: Float32Array, t: number, out?: Float32Array): Float32Array {
    sameLength("noise", noise, original);
    const a = this.alphaAt(t);
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(f32(1 - a));
    const dst = outBuffer({ out }, original.length);
    for (let i = 0; i < original.length; i++) dst[i] = sa * original[i]! + sb * noise[i]!;
    return dst;
  }
}

let fallbackNoise: PhiloxNormal | null = null;

/** Like diffusers without a generator: unseeded noise (pipelines always pass their seeded generator). */
function defaultNoise(): NoiseSource {
  fallbackNoise ??= new PhiloxNormal(randomSeed(), STREAM.scheduler);
  return fallbackNoise;
}
