import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { createGenerator, type Mode } from "../evals/harness.ts";
import { encodePng } from "../pipelines/image.ts";
import { registerGenerators } from "../src/generators/index.ts";

/** A models/ folder made of the tiny fixtures (real ONNX graphs, barely trained). */
function fixtureModels(): string {
  const dir = mkdtempSync(join(tmpdir(), "models-"));
  for (const [name, fixture] of [
    ["ldm", "tiny-ldm"],
    ["planner", "tiny-planner"],
    ["projection", "tiny-projection"],
  ]) {
    symlinkSync(resolve("tests/fixtures", fixture!), join(dir, name!));
  }
  return dir;
}

describe("eval generators", () => {
  registerGenerators();
  const models = fixtureModels();

  for (const mode of ["native", "plan-text", "plan"] as Mode[]) {
    it(`${mode}: a prompt and an edit dialogue give 64×64 images, the same for the same seed`, async () => {
      const generator = await createGenerator(mode, { models });
      try {
        const request = {
          id: "p",
          turns: ["a red circle"],
          expect: { objects: [{ shape: "circle" as const }] },
        };
        const a = await generator.generate(request, 5);
        const b = await generator.generate(request, 5);
        const c = await generator.generate(request, 6);
        expect([a.width, a.height]).toEqual([64, 64]);
        expect(encodePng(a).equals(encodePng(b))).toBe(true);
        expect(encodePng(a).equals(encodePng(c))).toBe(false);
        const edit = await generator.generate({ ...request, turns: ["a red circle", "make it blue"] }, 5);
        expect(edit.data.length).toBe(64 * 64 * 3);
      } finally {
        await generator.close?.();
      }
    });
  }
});

describe("oracle-vae", () => {
  registerGenerators();

  it("is the oracle's rendering after the embedded VAE's round trip: close to it, not equal, seed-stable", async () => {
    const oracle = await createGenerator("oracle");
    const generator = await createGenerator("oracle-vae", { models: "models" });
    try {
      const request = {
        id: "p",
        turns: ["a large red circle on a white background"],
        expect: { objects: [{ shape: "circle" as const, color: "red" as const, size: "large" as const }] },
      };
      const rendered = await oracle.generate(request, 3);
      const a = await generator.generate(request, 3);
      const b = await generator.generate(request, 3);
      expect(encodePng(a).equals(encodePng(b))).toBe(true);
      expect(encodePng(a).equals(encodePng(rendered))).toBe(false);
      let squared = 0;
      for (let i = 0; i < a.data.length; i++) squared += (a.data[i]! - rendered.data[i]!) ** 2;
      const psnr = 10 * Math.log10(255 ** 2 / (squared / a.data.length));
      expect(psnr).toBeGreaterThan(28);
    } finally {
      await generator.close?.();
    }
  });
});
