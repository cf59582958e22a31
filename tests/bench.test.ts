import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { runBench } from "../src/bench.ts";

describe("atelier bench", () => {
  it("profiles every stage of a generation on real sessions, and the shares add up", async () => {
    const models = mkdtempSync(join(tmpdir(), "bench-models-"));
    for (const [name, fixture] of [
      ["ldm", "tiny-ldm"],
      ["planner", "tiny-planner"],
      ["projection", "tiny-projection"],
    ]) {
      symlinkSync(resolve("tests/fixtures", fixture!), join(models, name!));
    }
    const report = await runBench({ models, runs: 2, steps: 3, threads: 1, prompt: "a red circle" });
    expect(Object.keys(report.stages)).toEqual([
      "planning",
      "hidden_states",
      "projection",
      "denoiser_calls",
      "denoise_loop",
      "pipeline_setup",
      "vae_decode",
    ]);
    for (const stage of Object.values(report.stages)) {
      expect(stage.p50).toBeGreaterThanOrEqual(0);
      expect(stage.p95).toBeGreaterThanOrEqual(stage.p50);
    }
    expect(report.stages.denoiser_calls!.p50).toBeGreaterThan(0);
    expect(report.planTokens).toBeGreaterThan(10);
    expect(report.peakRssMb).toBeGreaterThan(10);
    expect(report.settings.steps).toBe(3);
  });
});
