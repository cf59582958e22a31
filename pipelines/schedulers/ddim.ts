/**
 * DDIM (Song, Meng & Ermon 2021), diffusers' DDIMScheduler. One step is eq. 12:
 *   x_{t'} = √ᾱ_{t'}·x̂₀ + √(1 − ᾱ_{t'} − σ_t²)·ε̂ + σ_t·z,
 *   x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t,
 * with σ_t = η·√((1−ᾱ_{t'})/(1−ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t'}) (eq. 16); η = 0 is the deterministic DDIM sampler.
 */
import { invalid } from "../../src/errors.ts";
import {
  BaseScheduler,
  bool,
  COMMON_KEYS,
  checkStepCount,
  f32,
  type KeySpec,
  num,
  only,
  outBuffer,
  resolveConfig,
  type Scheduler,
  type StepOptions,
  type StepResult,
  sameLength,
} from "./common.ts";
import { discreteTimesteps } from "./ddpm.ts";

const KEYS: Record<string, KeySpec> = {
  ...COMMON_KEYS,
  clip_sample: { default: true, check: bool },
  clip_sample_range: { default: 1.0, check: num(0) },
  set_alpha_to_one: { default: true, check: bool },
  thresholding: { default: false, check: only(false) },
  dynamic_thresholding_ratio: { default: 0.995, check: num(0, 1) },
  sample_max_value: { default: 1.0, check: num(0) },
};

export class DDIMScheduler extends BaseScheduler implements Scheduler {
  readonly name = "ddim" as const;
  /** ᾱ used after the last step: 1 (set_alpha_to_one) or ᾱ_0. */
  readonly finalAlphaCumprod: number;

  constructor(config: Record<string, unknown> = {}) {
    super(resolveConfig("ddim", config, KEYS));
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    this.timesteps = discreteTimesteps(this.config, n);
    this.resetIndices();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    sameLength("modelOutput", modelOutput, sample);
    const eta = opts.eta ?? 0;
    if (!Number.isFinite(eta) || eta < 0) throw invalid("eta", `must be a number ≥ 0, got ${eta}`);
    // diffusers steps back by a fixed stride, whatever the spacing.
    const prevT = t - Math.floor(this.numTrainTimesteps / this.numInferenceSteps!);
    const aT = this.alphaAt(t);
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const bT = f32(1 - aT);
    const bPrev = f32(1 - aPrev);
    const sqrtA = Math.sqrt(aT);
    const sqrtB = Math.sqrt(bT);
    const variance = (bPrev / bT) * (1 - aT / aPrev);
    const std = eta * Math.sqrt(variance);
    const cX0 = Math.sqrt(aPrev);
    const cEps = Math.sqrt(Math.max(0, 1 - aPrev - std * std));
    const clip = this.config.clip_sample ? (this.config.clip_sample_range as number) : Infinity;
    const noise = eta > 0 ? this.noise(opts.generator, sample.length) : null;
    const x0 = this.x0Scratch(sample.length);
    const out = outBuffer(opts, sample.length);
    const type = this.predictionType;
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      const m = modelOutput[i]!;
      let p: number;
      let eps: number;
      if (type === "epsilon") {
        p = (x - sqrtB * m) / sqrtA;
        eps = m;
      } else if (type === "sample") {
        p = m;
        eps = (x - sqrtA * p) / sqrtB;
      } else {
        p = sqrtA * x - sqrtB * m;
        eps = sqrtA * m + sqrtB * x;
      }
      if (p > clip) p = clip;
      else if (p < -clip) p = -clip;
      x0[i] = p;
      out[i] = cX0 * p + cEps * eps + (noise ? std * noise[i]! : 0);
    }
    return { prevSample: out, predOriginalSample: x0 };
  }
}
