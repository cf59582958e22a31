/**
 * Euler sampler of Karras et al. 2022 (Algorithm 2 without churn), diffusers' EulerDiscreteScheduler.
 * The VP model is viewed as a VE process x = x₀ + σ·ε with σ_t = √((1−ᾱ_t)/ᾱ_t): the denoiser sees
 * x/√(σ²+1), and one step is the Euler update of the probability-flow ODE dx/dσ = (x − x̂₀)/σ:
 *   x_{i+1} = x_i + (σ_{i+1} − σ_i)·(x_i − x̂₀)/σ_i.
 */
import { invalid } from "../../src/errors.ts";
import {
  BaseScheduler,
  bool,
  COMMON_KEYS,
  checkStepCount,
  exponentialSigmas,
  indexForTimestep,
  interpIndex,
  type KeySpec,
  karrasSigmas,
  npArange,
  npLinspace,
  nullableNum,
  oneOf,
  only,
  outBuffer,
  resolveConfig,
  roundHalfEven,
  type Scheduler,
  type SchedulerName,
  type StepOptions,
  type StepResult,
  sameLength,
  sigmaTables,
  sigmaToT,
} from "./common.ts";

/** Float timesteps of the sigma schedulers (no rounding for "linspace", like diffusers' Euler family). */
export function sigmaTimesteps(config: Readonly<Record<string, unknown>>, n: number): number[] {
  const numTrain = config.num_train_timesteps as number;
  switch (config.timestep_spacing) {
    case "linspace":
      return npLinspace(0, numTrain - 1, n)
        .map(Math.fround)
        .reverse();
    case "leading": {
      const ratio = Math.floor(numTrain / n);
      const offset = config.steps_offset as number;
      return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + offset);
    }
    default:
      return npArange(numTrain, 0, -(numTrain / n)).map((t) => roundHalfEven(t) - 1);
  }
}

/** Shared by Euler and Euler ancestral: σ table, input scaling, sigma-based add_noise. */
export abstract class SigmaScheduler extends BaseScheduler {
  readonly trainSigmas: Float32Array;
  readonly logSigmas: Float32Array;
  /** σ per inference step plus the final σ (float32), length timesteps.length + 1. */
  sigmas: Float32Array;

  constructor(config: Record<string, unknown>) {
    super(config);
    const sigmas = sigmaTables(this.alphasCumprod);
    this.trainSigmas = sigmas.train;
    this.logSigmas = sigmas.log;
    this.sigmas = Float32Array.from([...this.trainSigmas].reverse().concat([0]));
  }

  /** max σ for "linspace"/"trailing", √(σ_max² + 1) for "leading" (whose first σ is not the training max). */
  override get initNoiseSigma(): number {
    let max = 0;
    for (const s of this.sigmas) max = Math.max(max, s);
    return this.config.timestep_spacing === "leading" ? Math.sqrt(max * max + 1) : max;
  }

  override scaleModelInput(sample: Float32Array, t: number, out?: Float32Array): Float32Array {
    this.requireTimesteps();
    const sigma = this.sigmas[this.initStepIndex(t)]!;
    const scale = 1 / Math.sqrt(sigma * sigma + 1);
    const dst = outBuffer({ out }, sample.length);
    for (let i = 0; i < sample.length; i++) dst[i] = sample[i]! * scale;
    return dst;
  }

  /** VE forward process x_σ = x₀ + σ·ε, with σ of the step being taken (diffusers' step/begin index rules). */
  override addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number,
    out?: Float32Array,
  ): Float32Array {
    this.requireTimesteps();
    sameLength("noise", noise, original);
    const index =
      this.beginIndex === null ? indexForTimestep(this.timesteps, t) : (this.stepIndex ?? this.beginIndex);
    const sigma = this.sigmas[index]!;
    const dst = outBuffer({ out }, original.length);
    for (let i = 0; i < original.length; i++) dst[i] = original[i]! + noise[i]! * sigma;
    return dst;
  }
}

const KEYS: Record<string, KeySpec> = {
  ...COMMON_KEYS,
  timestep_spacing: { default: "linspace", check: oneOf("leading", "trailing", "linspace") },
  interpolation_type: { default: "linear", check: only("linear") },
  use_karras_sigmas: { default: false, check: bool },
  use_exponential_sigmas: { default: false, check: bool },
  use_beta_sigmas: { default: false, check: only(false) },
  sigma_min: { default: null, check: nullableNum(0) },
  sigma_max: { default: null, check: nullableNum(0) },
  timestep_type: { default: "discrete", check: only("discrete") },
  final_sigmas_type: { default: "zero", check: oneOf("zero", "sigma_min") },
};

export class EulerScheduler extends SigmaScheduler implements Scheduler {
  readonly name: SchedulerName = "euler";

  constructor(config: Record<string, unknown> = {}) {
    const resolved = resolveConfig("euler", config, KEYS);
    if (resolved.use_karras_sigmas && resolved.use_exponential_sigmas)
      throw invalid("scheduler_config.use_exponential_sigmas", "cannot be combined with use_karras_sigmas");
    super(resolved);
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    let timesteps = sigmaTimesteps(this.config, n);
    // σ at each (possibly fractional) timestep: np.interp over the training sigmas.
    let sigmas = timesteps.map((t) => interpIndex(t, this.trainSigmas));
    if (this.config.use_karras_sigmas || this.config.use_exponential_sigmas) {
      const sigmaMin = (this.config.sigma_min as number | null) ?? sigmas[sigmas.length - 1]!;
      const sigmaMax = (this.config.sigma_max as number | null) ?? sigmas[0]!;
      sigmas = this.config.use_karras_sigmas
        ? karrasSigmas(sigmaMin, sigmaMax, n)
        : exponentialSigmas(sigmaMin, sigmaMax, n);
      timesteps = sigmas.map((s) => Math.fround(sigmaToT(s, this.logSigmas)));
    }
    const last =
      this.config.final_sigmas_type === "sigma_min"
        ? Math.sqrt(Math.fround(Math.fround(1 - this.alphasCumprod[0]!) / this.alphasCumprod[0]!))
        : 0;
    this.sigmas = Float32Array.from([...sigmas, last]);
    this.timesteps = timesteps;
    this.resetIndices();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    sameLength("modelOutput", modelOutput, sample);
    const idx = this.initStepIndex(t);
    const sigma = this.sigmas[idx]!;
    const dt = this.sigmas[idx + 1]! - sigma;
    const type = this.predictionType;
    const vIn = -sigma / Math.sqrt(sigma * sigma + 1);
    const vSkip = 1 / (sigma * sigma + 1);
    const x0 = this.x0Scratch(sample.length);
    const out = outBuffer(opts, sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      const m = modelOutput[i]!;
      // x̂₀: ε → x − σ·ε; v (c_out, c_skip of Karras et al. Table 1) → −σ/√(σ²+1)·v + x/(σ²+1); sample → m.
      const p = type === "epsilon" ? x - sigma * m : type === "v_prediction" ? m * vIn + x * vSkip : m;
      x0[i] = p;
      out[i] = x + ((x - p) / sigma) * dt;
    }
    this.stepIndex = idx + 1;
    return { prevSample: out, predOriginalSample: x0 };
  }
}
