import { describe, expect, it } from "vitest";
import { contactSheet } from "../evals/contact-sheet.ts";
import type { Layout } from "../evals/layout.ts";
import { LIGHTING_RGB, renderScene } from "../evals/render.ts";
import { createRng } from "../evals/rng.ts";
import { sampleScene } from "../evals/sample.ts";
import {
  BACKGROUND_RGB,
  BACKGROUNDS,
  COLORS,
  LIGHTINGS,
  PALETTE,
  parseScene,
  type Scene,
  SHAPES,
  type Shape,
  type Style,
} from "../evals/scene.ts";

const single = (shape: Shape, style: Style, extra: Partial<Scene> = {}): Scene =>
  parseScene({
    objects: [
      { shape, color: "blue", size: "large", count: 1, placement: { kind: "grid", position: "center" } },
    ],
    background: "white",
    style,
    lighting: "daylight",
    ...extra,
  });
const centred = (shape: Shape): Layout => ({
  instances: [{ group: 0, shape, color: "blue", size: "large", cell: 4, cx: 32, cy: 32, radius: 9.25 }],
});
const pixel = (data: Uint8Array, x: number, y: number, width = 64) =>
  Array.from(data.subarray((y * width + x) * 3, (y * width + x) * 3 + 3));

describe("renderScene", () => {
  it("is deterministic: same scene and seed give identical bytes, another seed other bytes", () => {
    const rng = createRng(11);
    for (let k = 0; k < 30; k++) {
      const scene = sampleScene(rng);
      const a = renderScene(scene, undefined, k);
      expect(a.width).toBe(64);
      expect(a.height).toBe(64);
      expect(Buffer.from(renderScene(scene, undefined, k).data).equals(Buffer.from(a.data))).toBe(true);
    }
    const free = parseScene({
      objects: [{ shape: "star", color: "red", size: "small", count: 3, placement: { kind: "free" } }],
      background: "sky",
      style: "watercolor",
      lighting: "warm",
    });
    expect(
      Buffer.from(renderScene(free, undefined, 1).data).equals(
        Buffer.from(renderScene(free, undefined, 2).data),
      ),
    ).toBe(false);
  });

  it("draws flat objects in the exact palette colour on the exact background, and lighting scales both", () => {
    for (const lighting of LIGHTINGS) {
      const image = renderScene(single("square", "flat", { lighting }), centred("square"), 0).data;
      const [lr, lg, lb] = LIGHTING_RGB[lighting];
      const lit = (c: readonly number[]) =>
        [Math.round(c[0]! * lr), Math.round(c[1]! * lg), Math.round(c[2]! * lb)].map((v) => Math.min(255, v));
      expect(pixel(image, 32, 32)).toEqual(lit(PALETTE.blue));
      expect(pixel(image, 2, 2)).toEqual(lit(BACKGROUND_RGB.white.top));
    }
    const sky = renderScene(single("circle", "flat", { background: "sky" }), centred("circle"), 0).data;
    expect(pixel(sky, 0, 0)[2]).toBeLessThan(pixel(sky, 0, 63)[2]!);
    expect(pixel(sky, 0, 0)).toEqual([121, 180, 240]);
  });

  it("anti-aliases edges: a flat circle has intermediate pixels on its rim", () => {
    const image = renderScene(single("circle", "flat"), centred("circle"), 0).data;
    const blended = new Set<number>();
    for (let p = 0; p < 64 * 64; p++) {
      const r = image[p * 3]!;
      if (r !== 245 && r !== PALETTE.blue[0]) blended.add(p);
    }
    expect(blended.size).toBeGreaterThan(30);
  });

  it("draws every shape upright with its own silhouette", () => {
    const coverage = (shape: Shape) => {
      const image = renderScene(single(shape, "flat"), centred(shape), 0).data;
      const rows: number[] = [];
      for (let y = 22; y < 42; y++) {
        let n = 0;
        for (let x = 20; x < 44; x++) n += pixel(image, x, y)[0]! < 150 ? 1 : 0;
        rows.push(n);
      }
      return rows;
    };
    const rows = Object.fromEntries(SHAPES.map((shape) => [shape, coverage(shape)]));
    const area = (shape: Shape) => rows[shape]!.reduce((a, b) => a + b, 0);
    // Triangle: apex up, so narrow at the top and wide at the bottom.
    expect(rows.triangle![2]!).toBeLessThan(5);
    expect(rows.triangle![17]!).toBeGreaterThan(15);
    // Square fills its box, the circle π/4 of it, cross 5/9, diamond 1/2, the star about a third.
    expect(area("square")).toBeGreaterThan(area("circle"));
    expect(area("circle")).toBeGreaterThan(area("cross"));
    expect(area("cross")).toBeGreaterThan(area("star"));
    expect(area("diamond")).toBeGreaterThan(area("star"));
    // The cross's arms: its top row is as narrow as its vertical arm; the middle row spans the box.
    expect(rows.cross![2]!).toBeLessThanOrEqual(8);
    expect(rows.cross![10]!).toBeGreaterThan(16);
  });

  it("outline style shows the background inside and the colour on the edge", () => {
    for (const shape of ["circle", "square", "diamond"] as const) {
      const image = renderScene(single(shape, "outline"), centred(shape), 0).data;
      expect(pixel(image, 32, 32)).toEqual([245, 245, 245]);
    }
    const square = renderScene(single("square", "outline"), centred("square"), 0).data;
    expect(pixel(square, 32, 23)).toEqual([...PALETTE.blue]);
  });

  it("watercolor has soft edges and only low-frequency texture (no per-pixel noise)", () => {
    const curvature = (image: Uint8Array, x0: number, x1: number, y0: number, y1: number) => {
      let max = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0 + 1; x < x1 - 1; x++) {
          for (let c = 0; c < 3; c++) {
            const d2 = pixel(image, x - 1, y)[c]! - 2 * pixel(image, x, y)[c]! + pixel(image, x + 1, y)[c]!;
            max = Math.max(max, Math.abs(d2));
          }
        }
      }
      return max;
    };
    for (let k = 0; k < 12; k++) {
      const background = BACKGROUNDS[k % 4]!;
      const lighting = LIGHTINGS[k % 3]!;
      const paper = renderScene(
        single("star", "watercolor", { background, lighting }),
        { instances: [] },
        k,
      ).data;
      // Paper alone: smooth (no per-pixel noise) and within a few percent of the plain background.
      expect(curvature(paper, 0, 64, 0, 64)).toBeLessThanOrEqual(2);
      const plain = renderScene(single("star", "flat", { background, lighting }), { instances: [] }, k).data;
      let excess = 0;
      for (let i = 0; i < plain.length; i++)
        excess = Math.max(excess, Math.abs(paper[i]! - plain[i]!) - 0.05 * plain[i]!);
      expect(excess).toBeLessThanOrEqual(1);
      // (On black the texture is below one grey level.)
      if (background !== "black") expect(Buffer.from(paper).equals(Buffer.from(plain))).toBe(false);
      // Pigment inside a large square is smooth too.
      const square = renderScene(
        single("square", "watercolor", { background, lighting }),
        centred("square"),
        k,
      ).data;
      expect(curvature(square, 28, 37, 28, 37)).toBeLessThanOrEqual(2);
    }
    // Soft edges: the ramp across a watercolor edge is wider than the flat one.
    const ramp = (style: Style) => {
      const image = renderScene(single("square", style), centred("square"), 0).data;
      let n = 0;
      for (let x = 16; x < 32; x++) {
        const r = pixel(image, x, 32)[0]!;
        if (r < 240 && r > 60) n++;
      }
      return n;
    };
    expect(ramp("watercolor")).toBeGreaterThan(ramp("flat"));
  });

  it("keeps all palette colours distinguishable from each other and the background under every lighting", () => {
    for (const lighting of LIGHTINGS) {
      const l = LIGHTING_RGB[lighting];
      const lit = (c: readonly number[]) => c.map((v, i) => Math.min(255, v * l[i]!));
      const dist = (a: number[], b: number[]) => Math.hypot(a[0]! - b[0]!, a[1]! - b[1]!, a[2]! - b[2]!);
      for (const a of COLORS) {
        for (const b of COLORS)
          if (a !== b) expect(dist(lit(PALETTE[a]), lit(PALETTE[b]))).toBeGreaterThan(40);
        for (const bg of BACKGROUNDS) {
          expect(dist(lit(PALETTE[a]), lit(BACKGROUND_RGB[bg].top))).toBeGreaterThan(50);
          expect(dist(lit(PALETTE[a]), lit(BACKGROUND_RGB[bg].bottom))).toBeGreaterThan(50);
        }
      }
    }
  });
});

describe("contactSheet", () => {
  it("tiles images with gaps, upscales, and marks pass/fail in the top-right corner", () => {
    const tiles = [0, 1, 2].map((k) => ({
      width: 4,
      height: 4,
      data: new Uint8Array(48).fill(50 * (k + 1)),
    }));
    const sheet = contactSheet(tiles, { columns: 2, scale: 10, gap: 2, marks: [true, false, null] });
    expect([sheet.width, sheet.height]).toEqual([2 * 42 + 2, 2 * 42 + 2]);
    const at = (x: number, y: number) => pixel(sheet.data, x, y, sheet.width);
    expect(at(5, 30)).toEqual([50, 50, 50]);
    expect(at(46, 30)).toEqual([100, 100, 100]);
    expect(at(5, 70)).toEqual([150, 150, 150]);
    expect(at(0, 0)).toEqual([48, 48, 48]);
    expect(at(38, 4)).toEqual([40, 200, 60]);
    expect(at(80, 4)).toEqual([230, 30, 30]);
    expect(at(38, 46)).toEqual([150, 150, 150]);
  });
});
