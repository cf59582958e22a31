/**
 * DPM-Solver++(2M) (Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
 * Diffusion Probabilistic Models", Algorithm 2), diffusers' DPMSolverMultistepScheduler with
 * algorithm_type "dpmsolver++". With α_t = 1/√(σ²+1), σ_t = σ·α_t, λ = ln(α_t/σ_t), h = λ_t − λ_s and the
 * data prediction D = x̂₀:
 *   first order (= DDIM):  x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·D₀
 *   second order midpoint: x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·D₀ − ½·α_t·(e^{−h} − 1)·D₁,
 *     D₁ = (D₀ − D₋₁)/r₀, r₀ = h₋₁/h;  heun: … + α_t·((e^{−h} − 1)/h + 1)·D₁.
 */

import { invalid } from "../../src/errors.ts";
import {
  BaseScheduler,
  bool,
  COMMON_KEYS,
  checkStepCount,
  exponentialSigmas,
  f32,
  indexForTimestep,
  int,
  interpIndex,
  type KeySpec,
  karrasSigmas,
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
  scratch,
  sigmaTables,
  sigmaToT,
} from "./common.ts";

const KEYS: Record<string, KeySpec> = {
  ...COMMON_KEYS,
  timestep_spacing: { default: "linspace", check: oneOf("leading", "trailing", "linspace") },
  solver_order: { default: 2, check: int(1, 2) },
  algorithm_type: { default: "dpmsolver++", check: only("dpmsolver++") },
  solver_type: { default: "midpoint", check: oneOf("midpoint", "heun") },
  lower_order_final: { default: true, check: bool },
  euler_at_final: { default: false, check: bool },
  use_karras_sigmas: { default: false, check: bool },
  use_exponential_sigmas: { default: false, check: bool },
  use_beta_sigmas: { default: false, check: only(false) },
  use_lu_lambdas: { default: false, check: only(false) },
  use_flow_sigmas: { default: false, check: only(false) },
  final_sigmas_type: { default: "zero", check: oneOf("zero", "sigma_min") },
  lambda_min_clipped: { default: -Infinity, check: num() },
  variance_type: { default: null, check: only(null) },
  thresholding: { default: false, check: only(false) },
  dynamic_thresholding_ratio: { default: 0.995, check: num(0, 1) },
  sample_max_value: { default: 1.0, check: num(0) },
};

/** (α_t, σ_t) of the VP process at VE noise level σ. */
function alphaSigma(sigma: number): [number, number] {
  const alpha = f32(1 / Math.sqrt(f32(sigma * sigma + 1)));
  return [alpha, f32(sigma * alpha)];
}

export class DPMSolverMultistepScheduler extends BaseScheduler implements Scheduler {
  readonly name = "dpmpp_2m" as const;
  readonly trainSigmas: Float32Array;
  readonly logSigmas: Float32Array;
  sigmas: Float32Array = new Float32Array(0);
  /** Data predictions of the last `solver_order` steps, oldest first (two rotating buffers). */
  private history: (Float32Array | null)[] = [null, null];
  private lowerOrderNums = 0;

  constructor(config: Record<string, unknown> = {}) {
    const resolved = resolveConfig("dpmpp_2m", config, KEYS);
    if (resolved.use_karras_sigmas && resolved.use_exponential_sigmas)
      throw invalid("scheduler_config.use_exponential_sigmas", "cannot be combined with use_karras_sigmas");
    super(resolved);
    const sigmas = sigmaTables(this.alphasCumprod);
    this.trainSigmas = sigmas.train;
    this.logSigmas = sigmas.log;
  }

  /** Last usable training timestep after clipping λ (matters for the cosine schedule only). */
  private lastTimestep(): number {
    const n = this.numTrainTimesteps;
    const minLambda = this.config.lambda_min_clipped as number;
    let clipped = 0;
    // searchsorted(flip(λ_t), λ_min): λ decreases with t, so count λ values below the threshold.
    for (let t = 0; t < n; t++) {
      const a = this.alphasCumprod[t]!;
      const lambda = Math.log(Math.sqrt(a)) - Math.log(Math.sqrt(f32(1 - a)));
      if (lambda < minLambda) clipped++;
    }
    return n - clipped;
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.numTrainTimesteps);
    const last = this.lastTimestep();
    let timesteps: number[];
    switch (this.config.timestep_spacing) {
      case "linspace":
        timesteps = npLinspace(0, last - 1, n + 1)
          .map(roundHalfEven)
          .reverse()
          .slice(0, n);
        break;
      case "leading": {
        const ratio = Math.floor(last / (n + 1));
        const offset = this.config.steps_offset as number;
        timesteps = Array.from({ length: n }, (_, i) => (n - i) * ratio + offset);
        break;
      }
      default:
        timesteps = npArange(last, 0, -(this.numTrainTimesteps / n)).map((t) => roundHalfEven(t) - 1);
    }
    let sigmas: number[];
    if (this.config.use_karras_sigmas || this.config.use_exponential_sigmas) {
      // Training σ range, flipped to descending: σ_max = σ_{T−1}, σ_min = σ_0.
      const min = this.trainSigmas[0]!;
      const max = this.trainSigmas[this.trainSigmas.length - 1]!;
      sigmas = this.config.use_karras_sigmas ? karrasSigmas(min, max, n) : exponentialSigmas(min, max, n);
      const cosine = this.config.beta_schedule === "squaredcos_cap_v2";
      timesteps = sigmas.map((s) => {
        const t = sigmaToT(s, this.logSigmas);
        return Math.trunc(this.config.use_karras_sigmas && !cosine ? roundHalfEven(t) : t);
      });
    } else {
      sigmas = timesteps.map((t) => interpIndex(t, this.trainSigmas));
    }
    const final =
      this.config.final_sigmas_type === "sigma_min"
        ? Math.sqrt(f32(f32(1 - this.alphasCumprod[0]!) / this.alphasCumprod[0]!))
        : 0;
    this.sigmas = Float32Array.from([...sigmas, final]);
    this.timesteps = timesteps;
    this.numInferenceSteps = timesteps.length;
    this.history = [null, null];
    this.lowerOrderNums = 0;
    this.resetIndices();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    sameLength("modelOutput", modelOutput, sample);
    const idx = this.initStepIndex(t, true);
    const len = this.timesteps.length;
    // Fall back to first order on the last step (always with a zero final σ, where h = ∞) and, with
    // lower_order_final, for short schedules: it stabilises sampling below ~15 steps.
    const lowerOrderFinal =
      idx === len - 1 &&
      (Boolean(this.config.euler_at_final) ||
        (Boolean(this.config.lower_order_final) && len < 15) ||
        this.config.final_sigmas_type === "zero");

    // Convert the model output to the data prediction x̂₀ that DPM-Solver++ integrates.
    const [alphaS, sigmaS] = alphaSigma(this.sigmas[idx]!);
    const older = this.history[1];
    const d0 = scratch(this.history[0], sample.length);
    this.history = [older, d0];
    const type = this.predictionType;
    for (let i = 0; i < sample.length; i++)
      d0[i] = predictX0(type, modelOutput[i]!, sample[i]!, alphaS, sigmaS);

    const [alphaT, sigmaT] = alphaSigma(this.sigmas[idx + 1]!);
    const lambdaT = Math.log(alphaT) - Math.log(sigmaT);
    const lambdaS = Math.log(alphaS) - Math.log(sigmaS);
    const h = lambdaT - lambdaS;
    const cX = sigmaT / sigmaS;
    const cD = -alphaT * (Math.exp(-h) - 1);
    const out = outBuffer(opts, sample.length);
    const order = this.config.solver_order as number;
    if (order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal || !older) {
      for (let i = 0; i < sample.length; i++) out[i] = cX * sample[i]! + cD * d0[i]!;
    } else {
      const [alphaS1, sigmaS1] = alphaSigma(this.sigmas[idx - 1]!);
      const lambdaS1 = Math.log(alphaS1) - Math.log(sigmaS1);
      const r0 = (lambdaS - lambdaS1) / h;
      const cD1 = this.config.solver_type === "midpoint" ? 0.5 * cD : alphaT * ((Math.exp(-h) - 1) / h + 1);
      for (let i = 0; i < sample.length; i++) {
        const d1 = (d0[i]! - older[i]!) / r0;
        out[i] = cX * sample[i]! + cD * d0[i]! + cD1 * d1;
      }
    }
    if (this.lowerOrderNums < order) this.lowerOrderNums++;
    this.stepIndex = idx + 1;
    return { prevSample: out, predOriginalSample: d0 };
  }

  /** VP forward process at the σ of the current step: x = α_t·x₀ + σ_t·ε. */
  override addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number,
    out?: Float32Array,
  ): Float32Array {
    this.requireTimesteps();
    sameLength("noise", noise, original);
    const index =
      this.beginIndex === null
        ? indexForTimestep(this.timesteps, t, true)
        : (this.stepIndex ?? this.beginIndex);
    const [alpha, sigma] = alphaSigma(this.sigmas[index]!);
    const dst = outBuffer({ out }, original.length);
    for (let i = 0; i < original.length; i++) dst[i] = alpha * original[i]! + sigma * noise[i]!;
    return dst;
  }
}
