import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { loadDiffusionModel } from "../pipelines/model-folder.ts";
import { buildModel, DT } from "../pipelines/onnx-builder.ts";
import {
  countGraphFlops,
  countImageFlops,
  efficiencyReport,
  matmulModel,
  measureMatmulPeak,
  theoreticalPeak,
} from "../src/efficiency.ts";

const f32 = (dims: number[]) =>
  new ort.Tensor(
    "float32",
    Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => (i % 7) / 7),
    dims,
  );

describe("FLOPs from the ONNX Runtime profile", () => {
  it("counts Conv (grouped too), ConvTranspose, batched MatMul and transposed Gemm with constant weights exactly", async () => {
    const model = buildModel({
      inputs: [
        { name: "x", type: DT.float, shape: [1, 3, 8, 8] },
        { name: "a", type: DT.float, shape: [2, 5, 6] },
        { name: "g", type: DT.float, shape: [3, 6] },
      ],
      outputs: [
        { name: "t", type: DT.float, shape: [1, 4, 16, 16] },
        { name: "m", type: DT.float, shape: [2, 5, 7] },
        { name: "y", type: DT.float, shape: [3, 4] },
      ],
      initializers: [
        { name: "w1", dims: [4, 3, 3, 3], values: new Array(108).fill(0.1) },
        { name: "w2", dims: [4, 2, 3, 3], values: new Array(72).fill(0.1) },
        { name: "wt", dims: [4, 1, 2, 2], values: new Array(16).fill(0.1) },
        { name: "b", dims: [6, 7], values: new Array(42).fill(0.1) },
        { name: "gw", dims: [4, 6], values: new Array(24).fill(0.1) },
      ],
      nodes: [
        // [1,3,8,8] * [4,3,3,3], pad 1 → [1,4,8,8]
        { op: "Conv", inputs: ["x", "w1"], outputs: ["c1"], attrs: [{ name: "pads", ints: [1, 1, 1, 1] }] },
        { op: "Relu", inputs: ["c1"], outputs: ["r"] },
        // two groups of 2 channels: [1,4,8,8] * [4,2,3,3] → [1,4,8,8]
        {
          op: "Conv",
          inputs: ["r", "w2"],
          outputs: ["c2"],
          attrs: [
            { name: "pads", ints: [1, 1, 1, 1] },
            { name: "group", i: 2 },
          ],
        },
        // depthwise transpose, stride 2: [1,4,8,8] * [4,1,2,2] → [1,4,16,16]
        {
          op: "ConvTranspose",
          inputs: ["c2", "wt"],
          outputs: ["t"],
          attrs: [
            { name: "strides", ints: [2, 2] },
            { name: "group", i: 4 },
          ],
        },
        // [2,5,6] × [6,7] broadcast → [2,5,7]
        { op: "MatMul", inputs: ["a", "b"], outputs: ["m"] },
        // [3,6] × [4,6]ᵀ → [3,4]
        { op: "Gemm", inputs: ["g", "gw"], outputs: ["y"], attrs: [{ name: "transB", i: 1 }] },
      ],
    });
    const { flops, outputs } = await countGraphFlops(model, {
      x: f32([1, 3, 8, 8]),
      a: f32([2, 5, 6]),
      g: f32([3, 6]),
    });
    const conv = 2 * (4 * 8 * 8) * (3 * 3 * 3) + 2 * (4 * 8 * 8) * (2 * 3 * 3);
    const convTranspose = 2 * (4 * 8 * 8) * (1 * 2 * 2);
    const matmul = 2 * (2 * 5 * 7) * 6;
    const gemm = 2 * (3 * 4) * 6;
    expect(flops.byOp).toEqual({
      Conv: { nodes: 2, flops: conv },
      ConvTranspose: { nodes: 1, flops: convTranspose },
      MatMul: { nodes: 1, flops: matmul },
      Gemm: { nodes: 1, flops: gemm },
    });
    expect(flops.flops).toBe(conv + convTranspose + matmul + gemm);
    expect(flops.nodes).toBe(6);
    expect(flops.uncounted).toEqual({});
    expect(outputs.t).toEqual([1, 4, 16, 16]);
  });

  it("counts one image of the tiny LDM as conditioning + steps × denoiser step + decode", async () => {
    const model = await loadDiffusionModel("tests/fixtures/tiny-ldm", { threads: 1, verify: false });
    try {
      const flops = await countImageFlops(model, { steps: 20 });
      const f = model.vaeScaleFactor;
      expect(flops.denoiserStep.batch).toBe(2);
      expect(flops.denoiserStep.sample).toEqual([2, model.latentChannels, model.height / f, model.width / f]);
      expect(flops.conditioning.component).toBe("text_encoder");
      expect(flops.conditioning.shape[0]).toBe(2);
      for (const part of [flops.conditioning, flops.denoiserStep, flops.decode])
        expect(part.flops).toBeGreaterThan(0);
      expect(flops.perImage).toBe(
        flops.conditioning.flops + 20 * flops.denoiserStep.flops + flops.decode.flops,
      );

      // Unguided runs the conditional half only: the same graph at batch 1 costs exactly half for the
      // batch-proportional ops, and never more than the guided pair.
      const single = await countImageFlops(model, { steps: 20, guided: false });
      expect(single.denoiserStep.batch).toBe(1);
      expect(single.denoiserStep.flops).toBeLessThan(flops.denoiserStep.flops);
      expect(single.decode.flops).toBe(flops.decode.flops);

      const report = efficiencyReport(
        flops,
        { conditioning: 2, denoiser: 100, decode: 5, image: 110 },
        { threads: 1, runs: 1, gflops: 10, sizes: [] },
        theoreticalPeak(),
      );
      expect(report.stages.image.gflop).toBeCloseTo(flops.perImage / 1e9, 12);
      expect(report.stages.denoiser.gflops).toBeCloseTo((20 * flops.denoiserStep.flops) / 1e9 / 0.1, 9);
      expect(report.stages.denoiser.percentOfPeak).toBeCloseTo(report.stages.denoiser.gflops * 10, 9);
    } finally {
      await model.dispose();
    }
  });
});

describe("matmul peak", () => {
  it("counts the one-node MatMul graph it times as 2n³", async () => {
    const { flops } = await countGraphFlops(matmulModel(32), { A: f32([32, 32]), B: f32([32, 32]) });
    expect(flops.flops).toBe(2 * 32 ** 3);
  });

  it("measures a positive, finite GFLOP/s", async () => {
    const peak = await measureMatmulPeak({ sizes: [64, 256], threads: 1, runs: 3 });
    expect(peak.gflops).toBeGreaterThan(0);
    expect(Number.isFinite(peak.gflops)).toBe(true);
    expect(peak.sizes.map((t) => t.n)).toEqual([64, 256]);
    expect(peak.gflops).toBe(Math.max(...peak.sizes.map((t) => t.gflops)));
    for (const t of peak.sizes) expect(t.bestMs).toBeLessThanOrEqual(t.medianMs);
  });
});
