/**
 * DDPM ancestral sampling (Ho, Jain & Abbeel 2020), diffusers' DDPMScheduler: x_{t'} is drawn from the
 * posterior q(x_{t'} | x_t, x̂₀) of eq. 6–7, with t' the previous inference timestep.
 */
import {
  BaseScheduler,
  bool,
  COMMON_KEYS,
  checkStepCount,
  f32,
  type KeySpec,
  npArange,
  npLinspace,
  num,
  oneOf,
  only,
  outBuffer,
  predictX0,
  resolveConfig,
  roundHalfEven,
  type Scheduler,
  type StepOptions,
  type StepResult,
  sameLength,
} from "./common.ts";

const KEYS: Record<string, KeySpec> = {
  ...COMMON_KEYS,
  variance_type: { default: "fixed_small", check: oneOf("fixed_small", "fixed_small_log", "fixed_large") },
  clip_sample: { default: true, check: bool },
  clip_sample_range: { default: 1.0, check: num(0) },
  thresholding: { default: false, check: only(false) },
  dynamic_thresholding_ratio: { default: 0.995, check: num(0, 1) },
  sample_max_value: { default: 1.0, check: num(0) },
};

/**
 * Inference timesteps for the "leading" / "trailing" / "linspace" spacings of Lin et al. 2023, Table 2,
 * as diffusers' DDPM, DDIM and LCM-style schedulers compute them (integers, descending).
 */
export function discreteTimesteps(config: Readonly<Record<string, unknown>>, n: number): number[] {
  const numTrain = config.num_train_timesteps as number;
  switch (config.timestep_spacing) {
    case "linspace":
      return npLinspace(0, numTrain - 1, n)
        .map(roundHalfEven)
        .reverse();
    case "leading": {
      const ratio = Math.floor(numTrain / n);
      const offset = config.steps_offset as number;
      return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + offset);
    }
    default: {
      const ratio = numTrain / n;
      return npArange(numTrain, 0, -ratio).map((t) => roundHalfEven(t) - 1);
    }
  }
}

export class DDPMScheduler extends BaseScheduler implements Scheduler {
  readonly name = "ddpm" as const;

  constructor(config: Record<string, unknown> = {}) {
    super(resolveConfig("ddpm", config, KEYS));
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    this.timesteps = discreteTimesteps(this.config, n);
    this.resetIndices();
  }

  private previousTimestep(t: number): number {
    return t - Math.floor(this.numTrainTimesteps / this.numInferenceSteps!);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    sameLength("modelOutput", modelOutput, sample);
    const prevT = this.previousTimestep(t);
    const aT = this.alphaAt(t);
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : 1;
    const bT = f32(1 - aT);
    const bPrev = f32(1 - aPrev);
    const curAlpha = f32(aT / aPrev);
    const curBeta = f32(1 - curAlpha);
    const sqrtA = Math.sqrt(aT);
    const sqrtB = Math.sqrt(bT);
    // Posterior mean μ̃_t(x_t, x̂₀) = √ᾱ_{t'}·β_t/(1−ᾱ_t)·x̂₀ + √α_t·(1−ᾱ_{t'})/(1−ᾱ_t)·x_t (eq. 7).
    const cX0 = (Math.sqrt(aPrev) * curBeta) / bT;
    const cXt = (Math.sqrt(curAlpha) * bPrev) / bT;
    // Posterior variance β̃_t = (1−ᾱ_{t'})/(1−ᾱ_t)·β_t (eq. 7), clamped like diffusers; "fixed_large" uses β_t.
    const small = Math.max((bPrev / bT) * curBeta, 1e-20);
    const std = this.config.variance_type === "fixed_large" ? Math.sqrt(curBeta) : Math.sqrt(small);
    const clip = this.config.clip_sample ? (this.config.clip_sample_range as number) : Infinity;
    const noise = t > 0 ? this.noise(opts.generator, sample.length) : null;
    const x0 = this.x0Scratch(sample.length);
    const out = outBuffer(opts, sample.length);
    const type = this.predictionType;
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      let p = predictX0(type, modelOutput[i]!, x, sqrtA, sqrtB);
      if (p > clip) p = clip;
      else if (p < -clip) p = -clip;
      x0[i] = p;
      out[i] = cX0 * p + cXt * x + (noise ? std * noise[i]! : 0);
    }
    return { prevSample: out, predOriginalSample: x0 };
  }
}
