/**
 * Reconstruction quality of an exported VAE (vae_encoder → posterior mean → vae_decoder, in onnxruntime-node)
 * on a dataset split: PSNR, and how often the oracle detector reads the same attributes from the
 * reconstruction as from the original (background, style, lighting, object count, and shape, colour and
 * size of each original object, matched to the nearest reconstructed object). Writes the figures into the
 * model's manifest.json under `eval.vae` unless --dry-run. `--failures FILE` also writes the indices of the
 * images whose round trip the detector reads differently, for `training/vae.py --hard FILE` to draw more often.
 *
 *   npx tsx training/eval-vae.ts --model models/ldm --data data/val --n 500
 *   npx tsx training/eval-vae.ts --data data/train --n 20000 --dry-run --failures data/train/failures.json
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { type Detection, detect } from "../evals/detector.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "models/ldm" },
    data: { type: "string", default: "data/val" },
    n: { type: "string", default: "500" },
    "dry-run": { type: "boolean", default: false },
    failures: { type: "string" },
  },
  strict: true,
});
const model = values.model!;
const index = JSON.parse(readFileSync(join(values.data!, "index.json"), "utf8"));
const [H, W] = [index.image.height, index.image.width];
const n = Math.min(Number(values.n), index.n);
const opts = { intraOpNumThreads: 2, graphOptimizationLevel: "all" } as const;
const encoder = await ort.InferenceSession.create(join(model, "vae_encoder/model.onnx"), opts);
const decoder = await ort.InferenceSession.create(join(model, "vae_decoder/model.onnx"), opts);

const ATTRIBUTES = ["background", "style", "lighting", "count", "shape", "color", "size"] as const;
const same: Record<string, number> = Object.fromEntries(ATTRIBUTES.map((a) => [a, 0]));
const total: Record<string, number> = Object.fromEntries(ATTRIBUTES.map((a) => [a, 0]));

/** Adds the attributes the reconstruction's detection shares with the original's; true if all agree. */
function compare(a: Detection, b: Detection): boolean {
  const checks: [string, boolean][] = [
    ["background", a.background === b.background],
    ["style", a.style === b.style],
    ["lighting", a.lighting === b.lighting],
    ["count", a.objects.length === b.objects.length],
  ];
  for (const o of a.objects) {
    const dist = (p: { cx: number; cy: number }) => Math.hypot(p.cx - o.cx, p.cy - o.cy);
    const near = b.objects.reduce<(typeof b.objects)[number] | null>(
      (best, p) => (!best || dist(p) < dist(best) ? p : best),
      null,
    );
    checks.push(
      ["shape", near?.shape === o.shape],
      ["color", near?.color === o.color],
      ["size", near?.size === o.size],
    );
  }
  for (const [attribute, ok] of checks) {
    same[attribute] += Number(ok);
    total[attribute] += 1;
  }
  return checks.every(([, ok]) => ok);
}

let psnrSum = 0;
let exact = 0;
const failures: number[] = [];
const BATCH = 50;
let done = 0;
for (const shard of index.shards) {
  const bytes = readFileSync(join(values.data!, shard.images));
  for (let start = 0; start < shard.n && done < n; start += BATCH) {
    const b = Math.min(BATCH, shard.n - start, n - done);
    const x = new Float32Array(b * 3 * H * W);
    for (let i = 0; i < b; i++)
      for (let p = 0; p < H * W; p++)
        for (let c = 0; c < 3; c++)
          x[(i * 3 + c) * H * W + p] = bytes[(start + i) * H * W * 3 + p * 3 + c] / 127.5 - 1;
    const { latent_parameters: params } = await encoder.run({
      sample: new ort.Tensor("float32", x, [b, 3, H, W]),
    });
    const [, ch, h, w] = params.dims;
    const half = (ch / 2) * h * w;
    const mean = new Float32Array(b * half);
    for (let i = 0; i < b; i++)
      mean.set((params.data as Float32Array).subarray(i * 2 * half, i * 2 * half + half), i * half);
    const { sample } = await decoder.run({
      latent_sample: new ort.Tensor("float32", mean, [b, ch / 2, h, w]),
    });
    const y = sample.data as Float32Array;
    for (let i = 0; i < b; i++) {
      const original = new Uint8Array(H * W * 3);
      const recon = new Uint8Array(H * W * 3);
      let se = 0;
      for (let p = 0; p < H * W; p++)
        for (let c = 0; c < 3; c++) {
          const v = Math.round(Math.min(1, Math.max(-1, y[(i * 3 + c) * H * W + p])) * 127.5 + 127.5);
          const o = bytes[(start + i) * H * W * 3 + p * 3 + c];
          original[p * 3 + c] = o;
          recon[p * 3 + c] = v;
          se += ((v - o) / 255) ** 2;
        }
      psnrSum += -10 * Math.log10(Math.max(se / (H * W * 3), 1e-10));
      const agrees = compare(
        detect({ width: W, height: H, data: original }),
        detect({ width: W, height: H, data: recon }),
      );
      exact += Number(agrees);
      if (!agrees) failures.push(done + i);
    }
    done += b;
  }
}
const result = {
  data: { split: index.split, seed: index.seed, images: done },
  psnr_db: Number((psnrSum / done).toFixed(3)),
  detector_attribute_agreement: Number(
    (ATTRIBUTES.reduce((n, a) => n + same[a], 0) / ATTRIBUTES.reduce((n, a) => n + total[a], 0)).toFixed(4),
  ),
  detector_agreement_by_attribute: Object.fromEntries(
    ATTRIBUTES.map((a) => [a, Number((same[a] / total[a]).toFixed(4))]),
  ),
  detector_exact_images: Number((exact / done).toFixed(4)),
};
console.log(JSON.stringify(result, null, 2));
if (values.failures) {
  writeFileSync(values.failures, `${JSON.stringify({ data: result.data, failures })}\n`);
}
if (!values["dry-run"]) {
  const path = join(model, "manifest.json");
  const manifest = JSON.parse(readFileSync(path, "utf8"));
  manifest.eval = { ...manifest.eval, vae: result };
  writeFileSync(path, `${JSON.stringify(manifest, null, 2)}\n`);
}
