/**
 * txt2img / img2img / inpaint on the embedded tiny latent diffusion fixture (tests/fixtures/tiny-ldm):
 * sizes, determinism of PNG bytes, per-image seeds, CFG batching, inpaint preservation, cancellation and
 * errors naming the field.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StepEvent } from "../pipelines/denoise.ts";
import { encodePng, type RgbImage } from "../pipelines/image.ts";
import { img2img } from "../pipelines/img2img.ts";
import { inpaint } from "../pipelines/inpaint.ts";
import { type Conditioning, type DiffusionModel, loadDiffusionModel } from "../pipelines/model-folder.ts";
import { encodePromptPair, txt2img } from "../pipelines/txt2img.ts";
import { AtelierError } from "../src/errors.ts";

let model: DiffusionModel;
let pair: { cond: Conditioning; uncond: Conditioning };

beforeAll(async () => {
  model = await loadDiffusionModel("tests/fixtures/tiny-ldm", { threads: 1 });
  pair = await encodePromptPair(model, "a red circle to the left of a blue square on a white background");
});

afterAll(async () => {
  await model?.dispose();
});

const png = (image: RgbImage) => encodePng(image);
const maxDiff = (a: RgbImage, b: RgbImage) =>
  a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i]!)), 0);

async function failure(promise: Promise<unknown>): Promise<AtelierError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AtelierError);
  return error as AtelierError;
}

/** Counts denoiser calls and their batch sizes around the real model. */
function instrumented(): { model: DiffusionModel; calls: number[] } {
  const calls: number[] = [];
  const wrapped: DiffusionModel = {
    ...model,
    createDenoiser(conditionings, size) {
      const inner = model.createDenoiser(conditionings, size);
      return {
        batch: inner.batch,
        run(sample, t) {
          calls.push(inner.batch);
          return inner.run(sample, t);
        },
      };
    },
  };
  return { model: wrapped, calls };
}

describe("txt2img", () => {
  it("makes 64×64 images, reports seeds and timings, and is byte-identical for the same seed", async () => {
    const a = await txt2img(model, pair, { seed: 11, steps: 8 });
    const b = await txt2img(model, pair, { seed: 11, steps: 8 });
    const c = await txt2img(model, pair, { seed: 12, steps: 8 });
    expect(a.images[0]!.width).toBe(64);
    expect(a.images[0]!.height).toBe(64);
    expect(a.seeds).toEqual([11]);
    expect(a.timings.perStep).toHaveLength(8);
    expect(a.timings.denoise).toBeGreaterThan(0);
    expect(png(a.images[0]!).equals(png(b.images[0]!))).toBe(true);
    expect(png(a.images[0]!).equals(png(c.images[0]!))).toBe(false);
  });

  it("draws a random uint32 seed when none is given and reports it", async () => {
    const r = await txt2img(model, pair, { steps: 2 });
    expect(r.seeds).toHaveLength(1);
    const again = await txt2img(model, pair, { steps: 2, seed: r.seeds[0]! });
    expect(png(again.images[0]!).equals(png(r.images[0]!))).toBe(true);
  });

  it("gives image i of a batch the image that its seed gives alone", async () => {
    const batch = await txt2img(model, pair, {
      seed: 40,
      numImages: 2,
      steps: 6,
      scheduler: "euler_ancestral",
    });
    expect(batch.seeds).toEqual([40, 41]);
    const alone = await txt2img(model, pair, { seeds: [41], steps: 6, scheduler: "euler_ancestral" });
    // Batched and single runs may pick different kernels; allow a last-bit rounding step.
    expect(maxDiff(batch.images[1]!, alone.images[0]!)).toBeLessThanOrEqual(1);
  });

  it("batches conditional and unconditional into one denoiser call; guidance ≤ 1 runs the conditional half", async () => {
    const guided = instrumented();
    await txt2img(guided.model, pair, { seed: 1, steps: 5, guidance: 5, numImages: 2 });
    expect(guided.calls).toEqual([4, 4, 4, 4, 4]);
    const plain = instrumented();
    const g1 = await txt2img(plain.model, pair, { seed: 1, steps: 5, guidance: 1 });
    expect(plain.calls).toEqual([1, 1, 1, 1, 1]);
    const g0 = await txt2img(model, { cond: pair.cond }, { seed: 1, steps: 5, guidance: 0 });
    expect(png(g0.images[0]!).equals(png(g1.images[0]!))).toBe(true);
  });

  it.each(["ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m", "lcm"])(
    "runs with the %s scheduler",
    async (name) => {
      const r = await txt2img(model, pair, { seed: 5, steps: 4, scheduler: name });
      expect(r.scheduler).toBe(name);
      expect(r.timesteps).toHaveLength(4);
    },
  );
});

describe("img2img", () => {
  it("starts at the timestep strength selects and returns a 64×64 image", async () => {
    const source = (await txt2img(model, pair, { seed: 2, steps: 4 })).images[0]!;
    const events: StepEvent[] = [];
    const schedule = { scheduler: "ddim", schedulerConfig: { timestep_spacing: "leading", steps_offset: 1 } };
    const r = await img2img(model, pair, source, {
      ...schedule,
      seed: 3,
      steps: 20,
      strength: 0.3,
      onStep: (e) => events.push(e),
    });
    // SD's DDIM schedule 951, 901, …, 1 (leading, offset 1): the last ⌊20·0.3⌋ = 6 steps.
    expect(r.timesteps).toEqual([251, 201, 151, 101, 51, 1]);
    expect(events.map((e) => e.timestep)).toEqual(r.timesteps);
    expect(r.images[0]!.width).toBe(64);
    expect(r.timings.encode).toBeGreaterThan(0);
    const same = await img2img(model, pair, source, { ...schedule, seed: 3, steps: 20, strength: 0.3 });
    expect(png(same.images[0]!).equals(png(r.images[0]!))).toBe(true);
  });
});

describe("inpaint", () => {
  it("keeps every unmasked pixel exactly (tolerance 0) and repaints the masked square", async () => {
    const source = (await txt2img(model, pair, { seed: 8, steps: 4 })).images[0]!;
    const data = new Uint8Array(64 * 64);
    for (let y = 20; y < 44; y++) data.fill(255, y * 64 + 20, y * 64 + 44);
    const mask = { width: 64, height: 64, data };
    const r = await inpaint(model, pair, source, mask, { seed: 9, steps: 10, scheduler: "euler" });
    const out = r.images[0]!;
    let changed = 0;
    for (let i = 0; i < data.length; i++)
      for (let c = 0; c < 3; c++) {
        if (data[i] === 0) expect(out.data[i * 3 + c]).toBe(source.data[i * 3 + c]);
        else if (out.data[i * 3 + c] !== source.data[i * 3 + c]) changed++;
      }
    expect(changed).toBeGreaterThan(100);
  });
});

describe("cancellation", () => {
  it("an abort from onStep stops before the next denoiser call", async () => {
    const controller = new AbortController();
    const probe = instrumented();
    const steps: number[] = [];
    const error = await failure(
      txt2img(probe.model, pair, {
        seed: 1,
        steps: 20,
        signal: controller.signal,
        onStep: ({ step }) => {
          steps.push(step);
          if (step === 2) controller.abort();
        },
      }),
    );
    expect(error.code).toBe("cancelled");
    expect(error.name).toBe("AbortError");
    expect(steps).toEqual([0, 1, 2]);
    expect(probe.calls).toHaveLength(3);
  });

  it("an already aborted signal runs nothing", async () => {
    const probe = instrumented();
    const error = await failure(txt2img(probe.model, pair, { signal: AbortSignal.abort() }));
    expect(error.code).toBe("cancelled");
    expect(probe.calls).toHaveLength(0);
  });
});

describe("bad input names the field", () => {
  const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) };
  it.each([
    [{ steps: 0 }, "steps"],
    [{ steps: 1001 }, "steps"],
    [{ steps: 2.5 }, "steps"],
    [{ guidance: -1 }, "guidance"],
    [{ scheduler: "pndm" }, "scheduler"],
    [{ schedulerConfig: { sigma_maxx: 1 } }, "scheduler_config.sigma_maxx"],
    [{ seed: -3 }, "seed"],
    [{ width: 60 }, "width"],
    [{ numImages: 0 }, "numImages"],
  ])("txt2img %j → %s", async (options, param) => {
    expect((await failure(txt2img(model, pair, options))).param).toBe(param);
  });

  it("strength outside (0, 1], a mask of another size, missing uncond", async () => {
    expect((await failure(img2img(model, pair, image, { strength: 0 }))).param).toBe("strength");
    expect((await failure(img2img(model, pair, image, { strength: 1.5 }))).param).toBe("strength");
    expect((await failure(img2img(model, pair, image, { strength: 0.01, steps: 20 }))).param).toBe(
      "strength",
    );
    const small = { width: 32, height: 32, data: new Uint8Array(32 * 32) };
    expect((await failure(inpaint(model, pair, image, small))).param).toBe("mask");
    expect((await failure(txt2img(model, { cond: pair.cond }, { guidance: 5 }))).param).toBe(
      "conditioning.uncond",
    );
  });
});
