/**
 * Latent Consistency Model multi-step sampling (Luo, Tan, Huang, Li & Zhao 2023, Algorithm 3), diffusers'
 * LCMScheduler. The consistency function is parameterised with the boundary condition of Song et al. 2023
 * (eq. 7–8): f(x, t) = c_skip(t)·x + c_out(t)·x̂₀ with, for s = t·timestep_scaling and σ_data = 0.5,
 *   c_skip = σ_data² / (s² + σ_data²),  c_out = s / √(s² + σ_data²),
 * so f(x, 0) = x. Between steps the denoised estimate is re-noised to the next timestep:
 *   x_{t'} = √ᾱ_{t'}·f(x_t, t) + √(1 − ᾱ_{t'})·z (no noise after the last step).
 */

import { invalid } from "../../src/errors.ts";
import {
  BaseScheduler,
  bool,
  COMMON_KEYS,
  checkStepCount,
  f32,
  int,
  type KeySpec,
  num,
  only,
  outBuffer,
  predictX0,
  resolveConfig,
  type Scheduler,
  type StepOptions,
  type StepResult,
  sameLength,
} from "./common.ts";

const KEYS: Record<string, KeySpec> = {
  ...COMMON_KEYS,
  beta_start: { default: 0.00085, check: num(0, 1) },
  beta_end: { default: 0.012, check: num(0, 1) },
  beta_schedule: { default: "scaled_linear", check: COMMON_KEYS.beta_schedule!.check },
  original_inference_steps: { default: 50, check: int(1, 100_000) },
  clip_sample: { default: false, check: bool },
  clip_sample_range: { default: 1.0, check: num(0) },
  set_alpha_to_one: { default: true, check: bool },
  thresholding: { default: false, check: only(false) },
  dynamic_thresholding_ratio: { default: 0.995, check: num(0, 1) },
  sample_max_value: { default: 1.0, check: num(0) },
  timestep_scaling: { default: 10.0, check: num(0) },
};

const SIGMA_DATA = 0.5;

export class LCMScheduler extends BaseScheduler implements Scheduler {
  readonly name = "lcm" as const;
  readonly finalAlphaCumprod: number;

  constructor(config: Record<string, unknown> = {}) {
    super(resolveConfig("lcm", config, KEYS));
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  /**
   * LCM's schedule: the distillation grid k−1, 2k−1, …, N−1 with k = N / original_inference_steps,
   * from which n evenly spaced entries are taken, largest first (timestep_spacing does not apply).
   */
  setTimesteps(n: number): void {
    checkStepCount(n, this.numTrainTimesteps);
    const original = this.config.original_inference_steps as number;
    if (original > this.numTrainTimesteps)
      throw invalid("scheduler_config.original_inference_steps", `cannot exceed num_train_timesteps`);
    if (n > original)
      throw invalid("steps", `LCM allows at most original_inference_steps (${original}) steps, got ${n}`);
    const k = Math.floor(this.numTrainTimesteps / original);
    const origin = Array.from({ length: original }, (_, i) => (original - i) * k - 1);
    // np.floor(np.linspace(0, len, n, endpoint=False)) picks the indices.
    this.timesteps = Array.from({ length: n }, (_, i) => origin[Math.floor(i * (original / n))]!);
    this.numInferenceSteps = n;
    this.resetIndices();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    sameLength("modelOutput", modelOutput, sample);
    const idx = this.initStepIndex(t);
    const last = idx === this.numInferenceSteps! - 1;
    const prevT = idx + 1 < this.timesteps.length ? this.timesteps[idx + 1]! : t;
    const aT = this.alphaAt(t);
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const sqrtA = Math.sqrt(aT);
    const sqrtB = Math.sqrt(f32(1 - aT));
    const s = t * (this.config.timestep_scaling as number);
    const cSkip = (SIGMA_DATA * SIGMA_DATA) / (s * s + SIGMA_DATA * SIGMA_DATA);
    const cOut = s / Math.sqrt(s * s + SIGMA_DATA * SIGMA_DATA);
    const clip = this.config.clip_sample ? (this.config.clip_sample_range as number) : Infinity;
    const noise = last ? null : this.noise(opts.generator, sample.length);
    const cPrev = Math.sqrt(aPrev);
    const cNoise = Math.sqrt(f32(1 - aPrev));
    const denoised = this.x0Scratch(sample.length);
    const out = outBuffer(opts, sample.length);
    const type = this.predictionType;
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      let p = predictX0(type, modelOutput[i]!, x, sqrtA, sqrtB);
      if (p > clip) p = clip;
      else if (p < -clip) p = -clip;
      const d = cOut * p + cSkip * x;
      denoised[i] = d;
      out[i] = noise ? cPrev * d + cNoise * noise[i]! : d;
    }
    this.stepIndex = idx + 1;
    return { prevSample: out, predOriginalSample: denoised };
  }
}
