/**
 * Schedulers against closed-form values: noise schedules, timestep spacings, sigmas, one-step analytic
 * cases and full loops with an oracle denoiser. Literal float32 values marked "torch" were computed with
 * torch 1.13 (float32 linspace/cumprod on CPU), the tensors diffusers builds.
 */
import { describe, expect, it } from "vitest";
import type { NoiseSource } from "../pipelines/random.ts";
import type { BaseScheduler } from "../pipelines/schedulers/common.ts";
import type { SigmaScheduler } from "../pipelines/schedulers/euler.ts";
import { createScheduler, loadSchedulerConfig, type Scheduler } from "../pipelines/schedulers/index.ts";
import { AtelierError } from "../src/errors.ts";

const SD = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  num_train_timesteps: 1000,
  steps_offset: 1,
  set_alpha_to_one: false,
  clip_sample: false,
};

const tables = (s: Scheduler) => s as unknown as BaseScheduler;
const sigmaTables = (s: Scheduler) => s as unknown as SigmaScheduler & { sigmas: Float32Array };

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel = 1e-6, abs = 1e-7): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const tol = abs + rel * Math.abs(expected[i]!);
    if (Math.abs(actual[i]! - expected[i]!) > tol)
      throw new Error(`index ${i}: ${actual[i]} vs expected ${expected[i]} (tol ${tol})`);
  }
}

/** Deterministic "noise" with a known pattern, to check how stochastic steps use it. */
class PatternNoise implements NoiseSource {
  calls = 0;
  fillNormal(out: Float32Array, offset = 0, length = out.length - offset): void {
    this.calls++;
    for (let i = 0; i < length; i++) out[offset + i] = Math.sin(1 + 7 * i + this.calls);
  }
}

const vec = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));

describe("noise schedules", () => {
  it("linear betas are torch.linspace(1e-4, 0.02) in float32", () => {
    const s = tables(createScheduler("ddpm"));
    expect(s.betas[0]).toBe(9.999999747378752e-5); // torch
    expect(s.betas[1]).toBe(0.00011991991777904332); // torch
    expect(s.betas[333]).toBe(0.006733333691954613); // torch
    expect(s.betas[500]).toBe(0.010059960186481476); // torch
    expect(s.betas[999]).toBe(0.019999999552965164); // torch
    expect(s.alphasCumprod[999]).toBe(4.0358307160204276e-5); // torch
    expectClose(
      s.betas,
      Array.from({ length: 1000 }, (_, i) => 1e-4 + (i * (0.02 - 1e-4)) / 999),
    );
  });

  it("scaled_linear (Stable Diffusion) betas, alphas_cumprod and sigmas", () => {
    const s = sigmaTables(createScheduler("euler", SD));
    const b0 = Math.sqrt(0.00085);
    const b1 = Math.sqrt(0.012);
    const betas = Array.from({ length: 1000 }, (_, i) => (b0 + (i * (b1 - b0)) / 999) ** 2);
    expectClose(s.betas, betas, 1e-6);
    let acc = 1;
    const cumprod = betas.map((b) => (acc *= 1 - b));
    expectClose(s.alphasCumprod, cumprod, 2e-6);
    expect(s.alphasCumprod[0]).toBe(0.9991499781608582); // torch
    expect(s.alphasCumprod[500]).toBe(0.2763324975967407); // torch
    expect(s.alphasCumprod[999]).toBe(0.0046600960195064545); // torch
    expect(s.trainSigmas[0]).toBe(0.029167532920837402); // torch: SD's σ_min
    expect(s.trainSigmas[999]).toBe(14.614645004272461); // torch: SD's σ_max
    // 1 − ᾱ cancels in float32 near t = 0 (ᾱ₀ ≈ 0.99915), so small sigmas carry ~1e-5 relative error.
    expectClose(
      s.trainSigmas,
      cumprod.map((a) => Math.sqrt((1 - a) / a)),
      3e-5,
    );
  });

  it("squaredcos_cap_v2 follows Glide's cosine ᾱ(t), betas capped at 0.999", () => {
    const s = tables(createScheduler("ddim", { beta_schedule: "squaredcos_cap_v2" }));
    const ab = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    expectClose(
      s.betas,
      Array.from({ length: 1000 }, (_, i) => Math.min(1 - ab((i + 1) / 1000) / ab(i / 1000), 0.999)),
    );
    expect(s.betas[999]).toBe(Math.fround(0.999));
  });

  it("rescale_betas_zero_snr makes the last ᾱ zero and keeps the first", () => {
    const plain = tables(createScheduler("ddim", SD));
    const zsnr = tables(createScheduler("ddim", { ...SD, rescale_betas_zero_snr: true }));
    expect(zsnr.alphasCumprod[999]).toBe(0);
    expect(zsnr.alphasCumprod[0]).toBeCloseTo(plain.alphasCumprod[0]!, 6);
  });
});

describe("timestep spacing", () => {
  it("leading with steps_offset 1 (SD's DDIM config, 50 steps) is 981, 961, …, 1", () => {
    const s = createScheduler("ddim", SD);
    s.setTimesteps(50);
    expect(s.timesteps).toEqual(Array.from({ length: 50 }, (_, i) => 981 - 20 * i));
  });

  it("trailing rounds halves to even like numpy (16 steps)", () => {
    const s = createScheduler("ddim", { timestep_spacing: "trailing" });
    s.setTimesteps(16);
    // np.round(np.arange(1000, 0, -62.5)) - 1
    expect(s.timesteps).toEqual([
      999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61,
    ]);
    s.setTimesteps(10);
    expect(s.timesteps).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  });

  it("linspace rounds for DDIM/DDPM and keeps float32 fractions for Euler", () => {
    const ddim = createScheduler("ddim", { timestep_spacing: "linspace" });
    ddim.setTimesteps(3);
    expect(ddim.timesteps).toEqual([999, 500, 0]); // 499.5 → 500 (even)
    const euler = createScheduler("euler");
    euler.setTimesteps(5);
    expect(euler.timesteps).toEqual([999, 749.25, 499.5, 249.75, 0]);
    const sig = sigmaTables(euler);
    const t = sig.trainSigmas;
    expectClose(sig.sigmas, [
      t[999]!,
      t[749]! + 0.25 * (t[750]! - t[749]!),
      t[499]! + 0.5 * (t[500]! - t[499]!),
      t[249]! + 0.75 * (t[250]! - t[249]!),
      t[0]!,
      0,
    ]);
  });

  it("DPM-Solver spaces n+1 points and drops the last", () => {
    const lin = createScheduler("dpmpp_2m");
    lin.setTimesteps(10);
    expect(lin.timesteps).toEqual([999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
    const lead = createScheduler("dpmpp_2m", { ...SD, timestep_spacing: "leading" });
    lead.setTimesteps(10);
    expect(lead.timesteps).toEqual([901, 811, 721, 631, 541, 451, 361, 271, 181, 91]);
    const trail = createScheduler("dpmpp_2m", { timestep_spacing: "trailing" });
    trail.setTimesteps(4);
    expect(trail.timesteps).toEqual([999, 749, 499, 249]);
  });

  it("LCM takes evenly spaced entries of its 50-step distillation grid", () => {
    const s = createScheduler("lcm");
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([999, 759, 499, 259]);
    s.setTimesteps(1);
    expect(s.timesteps).toEqual([999]);
  });

  it("Euler's initNoiseSigma is σ_max for linspace and √(σ_max²+1) for leading", () => {
    const lin = createScheduler("euler", SD);
    lin.setTimesteps(20);
    expect(lin.initNoiseSigma).toBeCloseTo(14.614645, 5);
    const lead = createScheduler("euler", { ...SD, timestep_spacing: "leading" });
    lead.setTimesteps(20);
    const first = sigmaTables(lead).sigmas[0]!;
    expect(lead.timesteps[0]).toBe(951);
    expect(lead.initNoiseSigma).toBeCloseTo(Math.sqrt(first * first + 1), 6);
  });
});

describe("Karras sigmas", () => {
  const karras = (min: number, max: number, n: number) =>
    Array.from(
      { length: n },
      (_, i) => (max ** (1 / 7) + (i / (n - 1)) * (min ** (1 / 7) - max ** (1 / 7))) ** 7,
    );

  it("DPM-Solver++ with use_karras_sigmas spans SD's σ_max … σ_min with ρ = 7", () => {
    const s = createScheduler("dpmpp_2m", { ...SD, use_karras_sigmas: true });
    s.setTimesteps(20);
    const sig = sigmaTables(s).sigmas;
    expectClose(sig.subarray(0, 20), karras(0.029167532920837402, 14.614645004272461, 20), 1e-6);
    expect(sig[20]).toBe(0);
    expect(s.timesteps[0]).toBe(999);
    expect(s.timesteps[19]).toBe(0);
    for (let i = 1; i < 20; i++) expect(s.timesteps[i]).toBeLessThanOrEqual(s.timesteps[i - 1]!);
  });

  it("Euler maps Karras sigmas back to fractional timesteps by log-σ interpolation", () => {
    const s = createScheduler("euler", { ...SD, use_karras_sigmas: true });
    s.setTimesteps(10);
    const st = sigmaTables(s);
    const logs = [...st.trainSigmas].map(Math.log);
    for (let i = 0; i < 10; i++) {
      const t = s.timesteps[i]!;
      const lo = Math.floor(t);
      const hi = Math.min(lo + 1, 999);
      const w = t - lo;
      // σ(t) recovered from the interpolated log-σ is the Karras σ of that step.
      expect(Math.exp((1 - w) * logs[lo]! + w * logs[hi]!)).toBeCloseTo(st.sigmas[i]!, 4);
    }
  });
});

describe("one-step analytic cases", () => {
  const n = 64;
  const x0 = vec(n, (i) => Math.cos(i * 0.37) * 0.8);
  const eps = vec(n, (i) => Math.sin(i * 1.3 + 0.2) * 1.1);

  it("DDIM η=0 with the true noise recovers x₀ and lands on the next noise level (eq. 12)", () => {
    const s = createScheduler("ddim", SD);
    s.setTimesteps(50);
    const t = s.timesteps[10]!;
    const prev = s.timesteps[11]!;
    const a = tables(s).alphasCumprod;
    const xt = vec(n, (i) => Math.sqrt(a[t]!) * x0[i]! + Math.sqrt(1 - a[t]!) * eps[i]!);
    const { prevSample, predOriginalSample } = s.step(eps, t, xt);
    expectClose(predOriginalSample!, x0, 1e-5, 1e-5);
    expectClose(
      prevSample,
      vec(n, (i) => Math.sqrt(a[prev]!) * x0[i]! + Math.sqrt(1 - a[prev]!) * eps[i]!),
      1e-5,
      1e-5,
    );
  });

  it("DDIM with v-prediction recovers x₀ from v = √ᾱ·ε − √(1−ᾱ)·x₀", () => {
    const s = createScheduler("ddim", { ...SD, prediction_type: "v_prediction" });
    s.setTimesteps(20);
    const t = s.timesteps[5]!;
    const a = tables(s).alphasCumprod[t]!;
    const xt = vec(n, (i) => Math.sqrt(a) * x0[i]! + Math.sqrt(1 - a) * eps[i]!);
    const v = vec(n, (i) => Math.sqrt(a) * eps[i]! - Math.sqrt(1 - a) * x0[i]!);
    expectClose(s.step(v, t, xt).predOriginalSample!, x0, 1e-5, 1e-5);
  });

  it("DDIM η=1 adds σ_t·z with σ_t of eq. 16", () => {
    const s = createScheduler("ddim", SD);
    s.setTimesteps(10);
    const t = s.timesteps[3]!;
    const prev = s.timesteps[4]!;
    const a = tables(s).alphasCumprod;
    const xt = vec(n, (i) => Math.sqrt(a[t]!) * x0[i]! + Math.sqrt(1 - a[t]!) * eps[i]!);
    const sigma = Math.sqrt((1 - a[prev]!) / (1 - a[t]!)) * Math.sqrt(1 - a[t]! / a[prev]!);
    const z = new Float32Array(n);
    new PatternNoise().fillNormal(z);
    const { prevSample } = s.step(eps, t, xt, { eta: 1, generator: new PatternNoise() });
    const expected = vec(
      n,
      (i) => Math.sqrt(a[prev]!) * x0[i]! + Math.sqrt(1 - a[prev]! - sigma * sigma) * eps[i]! + sigma * z[i]!,
    );
    expectClose(prevSample, expected, 1e-5, 1e-5);
  });

  it("DDPM samples the posterior q(x_{t'} | x_t, x₀) of eq. 7", () => {
    const s = createScheduler("ddpm", { ...SD, clip_sample: false });
    s.setTimesteps(10);
    const t = s.timesteps[2]!;
    const prev = s.timesteps[3]!;
    const a = tables(s).alphasCumprod;
    const xt = vec(n, (i) => Math.sqrt(a[t]!) * x0[i]! + Math.sqrt(1 - a[t]!) * eps[i]!);
    const beta = 1 - a[t]! / a[prev]!;
    const mean = (i: number) =>
      ((Math.sqrt(a[prev]!) * beta) / (1 - a[t]!)) * x0[i]! +
      ((Math.sqrt(1 - beta) * (1 - a[prev]!)) / (1 - a[t]!)) * xt[i]!;
    const std = Math.sqrt(((1 - a[prev]!) / (1 - a[t]!)) * beta);
    const z = new Float32Array(n);
    new PatternNoise().fillNormal(z);
    const { prevSample } = s.step(eps, t, xt, { generator: new PatternNoise() });
    expectClose(
      prevSample,
      vec(n, (i) => mean(i) + std * z[i]!),
      1e-5,
      1e-5,
    );
  });

  it("DDPM clips x̂₀ to clip_sample_range", () => {
    const s = createScheduler("ddpm", { clip_sample_range: 0.5 });
    s.setTimesteps(10);
    const { predOriginalSample } = s.step(
      vec(4, () => -3),
      900,
      vec(4, () => 2),
      { generator: new PatternNoise() },
    );
    expect([...predOriginalSample!]).toEqual([0.5, 0.5, 0.5, 0.5]);
  });

  it("Euler: with the true noise, x̂₀ = x₀ and the step lands on x₀ + σ_next·ε", () => {
    const s = createScheduler("euler", SD);
    s.setTimesteps(20);
    const sig = sigmaTables(s).sigmas;
    const t = s.timesteps[0]!;
    const x = vec(n, (i) => x0[i]! + sig[0]! * eps[i]!);
    const scaled = s.scaleModelInput(x, t);
    expectClose(
      scaled,
      vec(n, (i) => x[i]! / Math.sqrt(sig[0]! ** 2 + 1)),
      1e-6,
      1e-7,
    );
    const { prevSample, predOriginalSample } = s.step(eps, t, x);
    expectClose(predOriginalSample!, x0, 1e-5, 1e-5);
    expectClose(
      prevSample,
      vec(n, (i) => x0[i]! + sig[1]! * eps[i]!),
      1e-5,
      1e-5,
    );
  });

  it("Euler ancestral splits σ_to into σ_down (deterministic) and σ_up (fresh noise)", () => {
    const s = createScheduler("euler_ancestral", SD);
    s.setTimesteps(20);
    const sig = sigmaTables(s).sigmas;
    const [from, to] = [sig[4]!, sig[5]!];
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(to * to - up * up);
    expect(up * up + down * down).toBeCloseTo(to * to, 10);
    s.setBeginIndex(4);
    const x = vec(n, (i) => x0[i]! + from * eps[i]!);
    const z = new Float32Array(n);
    new PatternNoise().fillNormal(z);
    const { prevSample } = s.step(eps, s.timesteps[4]!, x, { generator: new PatternNoise() });
    expectClose(
      prevSample,
      vec(n, (i) => x0[i]! + down * eps[i]! + up * z[i]!),
      1e-5,
      1e-5,
    );
  });

  it("DPM-Solver++ first order is exact on a consistent x₀, the 2M step matches Lu et al.'s formula", () => {
    const s = createScheduler("dpmpp_2m", SD);
    s.setTimesteps(20);
    const sig = sigmaTables(s).sigmas;
    const as = (k: number) => {
      const alpha = 1 / Math.sqrt(sig[k]! ** 2 + 1);
      return [alpha, sig[k]! * alpha] as const;
    };
    const [a0, s0] = as(0);
    const [a1, s1] = as(1);
    const x = vec(n, (i) => a0 * x0[i]! + s0 * eps[i]!);
    const first = s.step(eps, s.timesteps[0]!, x).prevSample;
    expectClose(
      first,
      vec(n, (i) => a1 * x0[i]! + s1 * eps[i]!),
      1e-5,
      1e-5,
    );

    // Second step with a different x̂₀, to exercise D₁ = (D₀ − D₋₁)/r₀.
    const x0b = vec(n, (i) => x0[i]! * 0.9 + 0.05);
    const epsB = vec(n, (i) => (first[i]! - a1 * x0b[i]!) / s1);
    const [a2, s2] = as(2);
    const lam = (a: number, sg: number) => Math.log(a / sg);
    const h = lam(a2, s2) - lam(a1, s1);
    const r0 = (lam(a1, s1) - lam(a0, s0)) / h;
    const expected = vec(n, (i) => {
      const d1 = (x0b[i]! - x0[i]!) / r0;
      return (s2 / s1) * first[i]! - a2 * (Math.exp(-h) - 1) * x0b[i]! - 0.5 * a2 * (Math.exp(-h) - 1) * d1;
    });
    const second = s.step(epsB, s.timesteps[1]!, first).prevSample;
    expectClose(second, expected, 1e-5, 1e-5);
  });

  it("LCM applies the consistency boundary condition c_skip·x + c_out·x̂₀", () => {
    const s = createScheduler("lcm");
    s.setTimesteps(1);
    const t = 999;
    const a = tables(s).alphasCumprod[t]!;
    const x = vec(n, (i) => Math.sqrt(a) * x0[i]! + Math.sqrt(1 - a) * eps[i]!);
    const st = t * 10;
    const cSkip = 0.25 / (st * st + 0.25);
    const cOut = st / Math.sqrt(st * st + 0.25);
    const { prevSample } = s.step(eps, t, x);
    expectClose(
      prevSample,
      vec(n, (i) => cSkip * x[i]! + cOut * x0[i]!),
      1e-5,
      1e-5,
    );
  });

  it("addNoise: √ᾱ·x₀ + √(1−ᾱ)·ε for DDPM-family, x₀ + σ·ε for Euler", () => {
    const ddim = createScheduler("ddim", SD);
    ddim.setTimesteps(10);
    const a = tables(ddim).alphasCumprod[501]!;
    expectClose(
      ddim.addNoise(x0, eps, 501),
      vec(n, (i) => Math.sqrt(a) * x0[i]! + Math.sqrt(1 - a) * eps[i]!),
    );
    const euler = createScheduler("euler", SD);
    euler.setTimesteps(10);
    euler.setBeginIndex(3);
    const sigma = sigmaTables(euler).sigmas[3]!;
    expectClose(
      euler.addNoise(x0, eps, euler.timesteps[3]!),
      vec(n, (i) => x0[i]! + sigma * eps[i]!),
    );
  });
});

describe("full loops with an oracle denoiser", () => {
  const n = 32;
  const x0 = vec(n, (i) => Math.cos(i) * 0.7);
  const start = vec(n, (i) => Math.sin(3 * i + 1));

  /** The exact ε for x₀ at the noise level of step k, in the VP view of the scaled model input. */
  function oracle(s: Scheduler, input: Float32Array, t: number, k: number): Float32Array {
    const sigmas = (s as unknown as { sigmas?: Float32Array }).sigmas;
    const alpha = sigmas ? 1 / Math.sqrt(sigmas[k]! ** 2 + 1) : Math.sqrt(tables(s).alphasCumprod[t]!);
    const beta = Math.sqrt(1 - alpha * alpha);
    return vec(input.length, (i) => (input[i]! - alpha * x0[i]!) / beta);
  }

  const cases: [string, Record<string, unknown>, number, number][] = [
    ["ddim", { ...SD, set_alpha_to_one: true }, 20, 1e-4],
    ["ddpm", { ...SD, steps_offset: 0, clip_sample: false }, 20, 1e-4],
    ["euler", SD, 20, 1e-4],
    ["euler", { ...SD, timestep_spacing: "trailing" }, 8, 1e-4],
    ["euler_ancestral", SD, 20, 1e-4],
    ["dpmpp_2m", SD, 20, 1e-4],
    ["dpmpp_2m", { ...SD, use_karras_sigmas: true }, 12, 1e-3],
    ["lcm", {}, 4, 5e-3],
  ];

  it.each(cases)("%s %j in %i steps ends at x₀", (name, config, steps, tol) => {
    const s = createScheduler(name, config);
    s.setTimesteps(steps);
    let x: Float32Array = vec(n, (i) => start[i]! * s.initNoiseSigma);
    const generator = new PatternNoise();
    s.timesteps.forEach((t, k) => {
      const input = s.scaleModelInput(x, t);
      x = s.step(oracle(s, input, t, k), t, x, { generator }).prevSample;
    });
    expectClose(x, x0, 0, tol);
  });

  it("a stochastic loop is bit-identical for the same noise and updates in place through `out`", () => {
    const run = (inPlace: boolean) => {
      const s = createScheduler("euler_ancestral", SD);
      s.setTimesteps(10);
      const x = Float32Array.from(start);
      const generator = new PatternNoise();
      let cur: Float32Array = x;
      s.timesteps.forEach((t, k) => {
        const input = s.scaleModelInput(cur, t);
        cur = s.step(oracle(s, input, t, k), t, cur, {
          generator,
          out: inPlace ? cur : undefined,
        }).prevSample;
      });
      return cur;
    };
    const a = run(true);
    const b = run(false);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });
});

describe("configuration and errors", () => {
  const param = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(AtelierError);
      return { param: (error as AtelierError).param, message: (error as Error).message };
    }
    throw new Error("expected an error");
  };

  it("step() before setTimesteps() says what to call", () => {
    for (const name of ["ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m", "lcm"]) {
      const s = createScheduler(name);
      expect(() => s.step(new Float32Array(4), 999, new Float32Array(4))).toThrow(/call setTimesteps/);
    }
  });

  it("unknown scheduler names, keys and values are errors naming the field", () => {
    expect(param(() => createScheduler("pndm")).param).toBe("scheduler");
    expect(param(() => createScheduler("ddim", { beta_shedule: "linear" })).param).toBe(
      "scheduler_config.beta_shedule",
    );
    expect(param(() => createScheduler("euler", { beta_schedule: "cubic" })).param).toBe(
      "scheduler_config.beta_schedule",
    );
    expect(param(() => createScheduler("ddim", { thresholding: true })).param).toBe(
      "scheduler_config.thresholding",
    );
    expect(param(() => createScheduler("dpmpp_2m", { solver_order: 3 })).param).toBe(
      "scheduler_config.solver_order",
    );
    const s = createScheduler("ddim");
    expect(param(() => s.setTimesteps(0)).param).toBe("steps");
    expect(param(() => s.setTimesteps(1001)).param).toBe("steps");
  });

  it("accepts SD-Turbo's Euler config: one trailing step from σ_max to 0", () => {
    const turbo = {
      _class_name: "EulerDiscreteScheduler",
      _diffusers_version: "0.24.0.dev0",
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      beta_start: 0.00085,
      clip_sample: false,
      interpolation_type: "linear",
      num_train_timesteps: 1000,
      prediction_type: "epsilon",
      sample_max_value: 1.0,
      set_alpha_to_one: false,
      sigma_max: null,
      sigma_min: null,
      skip_prk_steps: true,
      steps_offset: 1,
      timestep_spacing: "trailing",
      timestep_type: "discrete",
      trained_betas: null,
      use_karras_sigmas: false,
    };
    const s = createScheduler("euler", turbo);
    s.setTimesteps(1);
    expect(s.timesteps).toEqual([999]);
    expect([...sigmaTables(s).sigmas]).toEqual([14.614645004272461, 0]);
    expect(s.initNoiseSigma).toBe(14.614645004272461);
    expect(() => createScheduler("euler", { ...turbo, interpolation_type: "log_linear" })).toThrow(
      /interpolation_type/,
    );
  });

  it("accepts a real SD 1.5 scheduler_config.json (PNDM keys) for every scheduler", async () => {
    const dir = await import("node:fs/promises").then((fs) => fs.mkdtemp("/tmp/atelier-sched-"));
    const path = `${dir}/scheduler_config.json`;
    const config = {
      _class_name: "PNDMScheduler",
      _diffusers_version: "0.6.0",
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false,
    };
    await import("node:fs/promises").then((fs) => fs.writeFile(path, JSON.stringify(config)));
    const loaded = await loadSchedulerConfig(path);
    for (const name of ["ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m", "lcm"]) {
      const s = createScheduler(name, loaded);
      s.setTimesteps(4);
      expect(s.timesteps).toHaveLength(4);
    }
  });
});
