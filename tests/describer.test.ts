import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { datasetItem } from "../evals/dataset.ts";
import { parsePlan } from "../evals/language/plan.ts";
import { BACKGROUNDS, COLORS, LIGHTINGS, SHAPES, SIZES, STYLES } from "../evals/scene.ts";
import type { RgbImage } from "../pipelines/image.ts";
import { critique } from "../src/agent/critic.ts";
import {
  descriptionCertainty,
  type HeadProbabilities,
  type LearnedDescriber,
  loadDescriber,
  sceneFromHeads,
} from "../src/agent/describer.ts";
import { scoreDescriptions } from "../src/agent/describer-eval.ts";

/** Head probabilities with `p` on the given label of each cell / global head and the rest spread evenly. */
function heads(
  cells: ({ shape: string; color: string; size: string; p?: number; sizeP?: number } | null)[],
  global = { background: "sky", style: "watercolor", lighting: "warm" },
): HeadProbabilities {
  const row = (labels: readonly string[], label: string, p: number) =>
    labels.map((l) => (l === label ? p : (1 - p) / (labels.length - 1)));
  const shapeLabels = ["empty", ...SHAPES];
  return {
    shape: Float32Array.from(cells.flatMap((c) => row(shapeLabels, c?.shape ?? "empty", c?.p ?? 0.9))),
    color: Float32Array.from(cells.flatMap((c) => row(COLORS, c?.color ?? "red", 0.8))),
    size: Float32Array.from(cells.flatMap((c) => row(SIZES, c?.size ?? "small", c?.sizeP ?? 0.8))),
    background: Float32Array.from(row(BACKGROUNDS, global.background, 0.7)),
    style: Float32Array.from(row(STYLES, global.style, 0.7)),
    lighting: Float32Array.from(row(LIGHTINGS, global.lighting, 0.7)),
  };
}
const empty = null;

describe("scene assembly from the heads", () => {
  it("groups one kind in several cells, places single objects, keeps reading order", () => {
    const star = { shape: "star", color: "red", size: "medium" };
    const circle = { shape: "circle", color: "blue", size: "large" };
    const { scene, confidence, cells } = sceneFromHeads(
      heads([
        empty,
        star,
        empty,
        circle,
        empty,
        empty,
        empty,
        empty,
        { ...circle, size: "small", p: 0.6, sizeP: 0.6 },
      ]),
    );
    expect(scene).toEqual({
      objects: [
        {
          shape: "star",
          color: "red",
          size: "medium",
          count: 1,
          placement: { kind: "grid", position: "top" },
        },
        { shape: "circle", color: "blue", size: "large", count: 2, placement: { kind: "free" } },
      ],
      background: "sky",
      style: "watercolor",
      lighting: "warm",
    });
    expect(cells.map((c) => c.shape)).toEqual([
      null,
      "star",
      null,
      "circle",
      null,
      null,
      null,
      null,
      "circle",
    ]);
    expect(confidence.background).toBeCloseTo(0.7, 5);
    expect(confidence.objects[1]!.shape).toBeCloseTo(0.75, 5);
    expect(confidence.objects[1]!.size).toBeCloseTo(0.5, 5); // "large" wins the vote: 0.8 + 0.2 against 0.1 + 0.6
    expect(confidence.objects[0]!.count).toBeGreaterThan(confidence.objects[1]!.count);
  });

  it("always returns a valid scene: an empty reading still names its most likely object", () => {
    const cells = Array.from({ length: 9 }, () => null) as (null | {
      shape: string;
      color: string;
      size: string;
    })[];
    const probs = heads(cells);
    probs.shape[4 * 7] = 0.4; // the centre is the least certainly empty cell
    probs.shape[4 * 7 + 3] = 0.3; // … and most likely a triangle
    const { scene } = sceneFromHeads(probs);
    expect(scene.objects).toEqual([
      {
        shape: "triangle",
        color: "red",
        size: "small",
        count: 1,
        placement: { kind: "grid", position: "center" },
      },
    ]);
  });

  it("certainty multiplies every reading: one doubtful cell makes the description doubtful", () => {
    const star = { shape: "star", color: "red", size: "medium" };
    const describe = (cells: Parameters<typeof heads>[0]) => {
      const { scene, confidence, cells: readings } = sceneFromHeads(heads(cells));
      return { scene, plan: "", confidence, cells: readings };
    };
    const sure = describe([star, empty, empty, empty, empty, empty, empty, empty, empty]);
    // 9 cells at 0.9, the star's colour 0.8 and size 0.8, three global heads at 0.7.
    expect(descriptionCertainty(sure)).toBeCloseTo(0.9 ** 9 * 0.8 * 0.8 * 0.7 ** 3, 6);
    const doubtful = describe([
      star,
      empty,
      empty,
      empty,
      { ...star, shape: "empty", p: 0.4 },
      empty,
      empty,
      empty,
      empty,
    ]);
    expect(doubtful.scene).toEqual(sure.scene);
    expect(descriptionCertainty(doubtful)!).toBeCloseTo((descriptionCertainty(sure)! * 0.4) / 0.9, 6);
    expect(descriptionCertainty({ ...sure, confidence: null })).toBeNull();
  });

  it("caps groups at 4 and objects of a kind at 4, keeping the most certain", () => {
    const kinds = ["circle", "square", "triangle", "star", "diamond"].map((shape, i) => ({
      shape,
      color: "green",
      size: "small",
      p: 0.5 + i * 0.1,
    }));
    const five = sceneFromHeads(heads([...kinds, empty, empty, empty, empty])).scene;
    expect(five.objects.map((g) => g.shape)).toEqual(["square", "triangle", "star", "diamond"]);
    const crosses = Array.from({ length: 9 }, (_, i) => ({
      shape: "cross",
      color: "pink",
      size: "large",
      p: 0.5 + i * 0.05,
    }));
    const many = sceneFromHeads(heads(crosses)).scene;
    expect(many.objects).toEqual([
      { shape: "cross", color: "pink", size: "large", count: 4, placement: { kind: "free" } },
    ]);
  });
});

describe("the embedded describer (models/describer)", () => {
  let describer: LearnedDescriber;
  beforeAll(async () => {
    describer = await loadDescriber(undefined, { threads: 1 });
  });
  afterAll(async () => {
    await describer.dispose();
  });

  it("runs the exported graph as PyTorch did (reference outputs in describer.json)", async () => {
    const input = new Float32Array(3 * 64 * 64);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 64; y++)
        for (let x = 0; x < 64; x++) input[(c * 64 + y) * 64 + x] = ((c * 64 + y * 7 + x * 3) % 251) / 250;
    const logits = await describer.logits(input, 1);
    for (const [head, expected] of Object.entries(describer.manifest.reference.outputs)) {
      const got = Array.from(logits[head as keyof typeof logits].slice(0, expected.length));
      got.forEach((v, i) => {
        expect(v).toBeCloseTo(expected[i]!, 3);
      });
    }
  });

  it("describes rendered scenes of the test split accurately, always as a valid plan", async () => {
    const items = Array.from({ length: 48 }, (_, i) => datasetItem("test", 11, i));
    const images: RgbImage[] = items.map((item) => ({ width: 64, height: 64, data: item.image }));
    const descriptions = await describer.describeMany(images);
    for (const d of descriptions) expect(parsePlan(d.plan)).toEqual(d.scene);
    const report = scoreDescriptions(
      items.map((item) => item.record),
      descriptions,
    );
    expect(report.meanAgreement).toBeGreaterThan(0.95);
    expect(report.attributes.plan_exact.accuracy).toBeGreaterThan(0.7);
    for (const field of ["color", "count", "position", "background", "lighting"] as const)
      expect(report.attributes[field].accuracy, field).toBeGreaterThan(0.9);
    // One image at a time gives the same answer as the batch (the session is reused, not rebuilt).
    const single = await describer.describe(images[0]!);
    expect(single.plan).toBe(descriptions[0]!.plan);
    expect(critique(items[0]!.record.scene, single.scene).agreement).toBeGreaterThan(0.8);
  });

  it("reads other sizes by resampling (a 2× upscale reads as the original)", async () => {
    const { image } = datasetItem("test", 12, 0);
    const big = new Uint8Array(128 * 128 * 3);
    for (let y = 0; y < 128; y++)
      for (let x = 0; x < 128; x++)
        for (let c = 0; c < 3; c++) big[(y * 128 + x) * 3 + c] = image[((y >> 1) * 64 + (x >> 1)) * 3 + c]!;
    const small = await describer.describe({ width: 64, height: 64, data: image });
    const large = await describer.describe({ width: 128, height: 128, data: big });
    expect(large.plan).toBe(small.plan);
  });

  it("names bad input and bad model folders", async () => {
    await expect(describer.describe({ width: 3, height: 3, data: new Uint8Array(4) })).rejects.toThrow(
      /^image: /,
    );
    const dir = mkdtempSync(join(tmpdir(), "atelier-describer-"));
    try {
      await expect(loadDescriber(dir)).rejects.toMatchObject({ code: "model_invalid" });
      writeFileSync(
        join(dir, "describer.json"),
        JSON.stringify({
          ...describer.manifest,
          cell_heads: { ...describer.manifest.cell_heads, cell_size: ["large", "small", "medium"] },
        }),
      );
      await expect(loadDescriber(dir)).rejects.toThrow(/cell_size/);
      await expect(loadDescriber(dir, { threads: 0 })).rejects.toThrow(/^threads: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
