/**
 * Checks exported diffusion model folders (training/export.py) in onnxruntime-node: the diffusers layout and
 * I/O names, the manifest's sha256 of every file (the freeze check), the tokenizer in transformers.js, and
 * each graph's outputs against the PyTorch outputs stored in reference.json. Runs on the committed tiny
 * fixture and, when present, on the embedded model in models/ldm.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { AutoTokenizer, env } from "@huggingface/transformers";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { schedulerNameForClass } from "../pipelines/schedulers/index.ts";

type Summary = { dims: number[]; head: number[]; mean: number; meanAbs: number };
type InputSpec = { dims: number[]; data?: number[]; amp?: number; phase?: number };
type Component = { inputs: Record<string, InputSpec>; outputs: Record<string, Summary> };

const FOLDERS = ["tests/fixtures/tiny-ldm", "models/ldm"].filter((dir) =>
  existsSync(join(dir, "manifest.json")),
);

const IO: Record<string, { inputs: string[]; outputs: string[] }> = {
  text_encoder: { inputs: ["input_ids"], outputs: ["last_hidden_state", "pooler_output"] },
  unet: { inputs: ["sample", "timestep", "encoder_hidden_states", "text_embeds"], outputs: ["out_sample"] },
  vae_encoder: { inputs: ["sample"], outputs: ["latent_parameters"] },
  vae_decoder: { inputs: ["latent_sample"], outputs: ["sample"] },
};

const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8"));

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** The deterministic inputs of training/export.py: x[i] = fround(amp · sin(0.37 i + phase)). */
function tensorFor(name: string, spec: InputSpec): ort.Tensor {
  const size = spec.dims.reduce((a, b) => a * b, 1);
  if (name === "input_ids")
    return new ort.Tensor("int64", BigInt64Array.from(spec.data ?? [], BigInt), spec.dims);
  const data = spec.data
    ? Float32Array.from(spec.data)
    : Float32Array.from({ length: size }, (_, i) => (spec.amp ?? 1) * Math.sin(0.37 * i + (spec.phase ?? 0)));
  return new ort.Tensor("float32", data, spec.dims);
}

function expectClose(actual: ort.Tensor, expected: Summary) {
  expect([...actual.dims]).toEqual(expected.dims);
  const data = actual.data as Float32Array;
  const scale = Math.max(expected.meanAbs, 1e-3);
  expected.head.forEach((value, i) => {
    expect(Math.abs(data[i] - value)).toBeLessThan(1e-3 * scale + 1e-4);
  });
  let sum = 0;
  let sumAbs = 0;
  for (const v of data) {
    expect(Number.isFinite(v)).toBe(true);
    sum += v;
    sumAbs += Math.abs(v);
  }
  expect(Math.abs(sum / data.length - expected.mean)).toBeLessThan(1e-3 * scale + 1e-5);
  expect(Math.abs(sumAbs / data.length - expected.meanAbs)).toBeLessThan(1e-3 * scale + 1e-5);
}

const open = (dir: string, component: string) =>
  ort.InferenceSession.create(join(dir, component, "model.onnx"), { intraOpNumThreads: 1 });

describe.each(FOLDERS)("diffusion model folder %s", (dir) => {
  const manifest = readJson(join(dir, "manifest.json"));
  const reference = readJson(join(dir, "reference.json"));

  it("lists every file with its sha256 in manifest.json (frozen weights)", () => {
    const files = walk(dir)
      .map((path) => relative(dir, path))
      .filter((path) => path !== "manifest.json")
      .sort();
    expect(Object.keys(manifest.files).sort()).toEqual(files);
    for (const file of files) {
      const sha = createHash("sha256")
        .update(readFileSync(join(dir, file)))
        .digest("hex");
      expect(sha, file).toBe(manifest.files[file].sha256);
    }
    expect(manifest.parameters.unet).toBeLessThanOrEqual(5_000_000);
  });

  it("has the diffusers layout and scheduler keys", () => {
    const index = readJson(join(dir, "model_index.json"));
    expect(index.unet).toEqual(["diffusers", "OnnxRuntimeModel"]);
    const scheduler = readJson(join(dir, "scheduler/scheduler_config.json"));
    // The folder's sampler is its scheduler class: the one the manifest recommends, named in model_index too.
    expect(schedulerNameForClass(scheduler._class_name)).toBe(manifest.recommended.scheduler);
    expect(index.scheduler).toEqual(["diffusers", scheduler._class_name]);
    expect(scheduler).toMatchObject({
      num_train_timesteps: 1000,
      beta_schedule: "scaled_linear",
      prediction_type: "epsilon",
      steps_offset: 1,
    });
    expect(readJson(join(dir, "vae_decoder/config.json")).scaling_factor).toBeGreaterThan(0);
  });

  it("tokenizes the reference caption in transformers.js as in Python", async () => {
    env.allowRemoteModels = false;
    env.localModelPath = join(process.cwd(), dir);
    const tokenizer = await AutoTokenizer.from_pretrained("tokenizer");
    const maxLength = readJson(join(dir, "tokenizer/tokenizer_config.json")).model_max_length;
    const encoded = tokenizer(reference.caption, {
      padding: "max_length",
      max_length: maxLength,
      truncation: true,
    });
    const ids = Array.from(encoded.input_ids.data as BigInt64Array, Number);
    expect(ids).toEqual(reference.text_encoder.inputs.input_ids.data.slice(0, maxLength));
  });

  it.each(Object.keys(IO))("%s matches the PyTorch reference outputs", async (component) => {
    const session = await open(dir, component);
    expect([...session.inputNames].sort()).toEqual([...IO[component].inputs].sort());
    expect([...session.outputNames]).toEqual(IO[component].outputs);
    const spec: Component = reference[component];
    const feeds = Object.fromEntries(
      Object.entries(spec.inputs).map(([name, s]) => [name, tensorFor(name, s)]),
    );
    const outputs = await session.run(feeds);
    for (const [name, expected] of Object.entries(spec.outputs)) expectClose(outputs[name], expected);
    await session.release();
  });

  it("takes a batch of 1 and fewer conditioning tokens (dynamic axes)", async () => {
    const text = await open(dir, "text_encoder");
    const ids = new ort.Tensor("int64", BigInt64Array.from([3n, 4n, 5n, 0n, 0n]), [1, 5]);
    const encoded = await text.run({ input_ids: ids });
    const d = encoded.pooler_output.dims[1];
    expect([...encoded.last_hidden_state.dims]).toEqual([1, 5, d]);
    const unet = await open(dir, "unet");
    const out = await unet.run({
      sample: new ort.Tensor("float32", new Float32Array(256).fill(0.5), [1, 4, 8, 8]),
      timestep: new ort.Tensor("float32", Float32Array.from([999]), [1]),
      encoder_hidden_states: new ort.Tensor("float32", new Float32Array(8 * d).fill(0.1), [1, 8, d]),
      text_embeds: encoded.pooler_output,
    });
    expect([...out.out_sample.dims]).toEqual([1, 4, 8, 8]);
    expect((out.out_sample.data as Float32Array).every(Number.isFinite)).toBe(true);
    await Promise.all([text.release(), unet.release()]);
  });
});
