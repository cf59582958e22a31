/**
 * Euler ancestral sampling (k-diffusion's sample_euler_ancestral), diffusers' EulerAncestralDiscreteScheduler.
 * Each step splits the move from σ_from to σ_to into a deterministic Euler step down to σ_down and fresh
 * noise of size σ_up, with σ_up = √(σ_to²·(σ_from² − σ_to²)/σ_from²) and σ_down = √(σ_to² − σ_up²),
 * so the marginal at σ_to is preserved.
 */
import { invalid } from "../../src/errors.ts";
import {
  COMMON_KEYS,
  checkStepCount,
  interpIndex,
  type KeySpec,
  oneOf,
  outBuffer,
  resolveConfig,
  type Scheduler,
  type StepOptions,
  type StepResult,
  sameLength,
} from "./common.ts";
import { SigmaScheduler, sigmaTimesteps } from "./euler.ts";

const KEYS: Record<string, KeySpec> = {
  ...COMMON_KEYS,
  timestep_spacing: { default: "linspace", check: oneOf("leading", "trailing", "linspace") },
};

export class EulerAncestralScheduler extends SigmaScheduler implements Scheduler {
  readonly name = "euler_ancestral" as const;

  constructor(config: Record<string, unknown> = {}) {
    const resolved = resolveConfig("euler_ancestral", config, KEYS);
    if (resolved.prediction_type === "sample")
      throw invalid(
        "scheduler_config.prediction_type",
        'euler_ancestral supports "epsilon" and "v_prediction"',
      );
    super(resolved);
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    this.timesteps = sigmaTimesteps(this.config, n);
    this.sigmas = Float32Array.from([...this.timesteps.map((t) => interpIndex(t, this.trainSigmas)), 0]);
    this.resetIndices();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    sameLength("modelOutput", modelOutput, sample);
    const idx = this.initStepIndex(t);
    const sigma = this.sigmas[idx]!;
    const sigmaTo = this.sigmas[idx + 1]!;
    const sigmaUp = Math.sqrt((sigmaTo * sigmaTo * (sigma * sigma - sigmaTo * sigmaTo)) / (sigma * sigma));
    const sigmaDown = Math.sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);
    const dt = sigmaDown - sigma;
    const vIn = -sigma / Math.sqrt(sigma * sigma + 1);
    const vSkip = 1 / (sigma * sigma + 1);
    const eps = this.predictionType === "epsilon";
    const noise = sigmaUp > 0 ? this.noise(opts.generator, sample.length) : null;
    const x0 = this.x0Scratch(sample.length);
    const out = outBuffer(opts, sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      const m = modelOutput[i]!;
      const p = eps ? x - sigma * m : m * vIn + x * vSkip;
      x0[i] = p;
      out[i] = x + ((x - p) / sigma) * dt + (noise ? noise[i]! * sigmaUp : 0);
    }
    this.stepIndex = idx + 1;
    return { prevSample: out, predOriginalSample: x0 };
  }
}
