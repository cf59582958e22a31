/**
 * Model-folder loading: the embedded tiny fixture (diffusers ONNX layout with manifest) and a
 * Stable-Diffusion-style export built here from hand-written ONNX graphs (int32 input_ids, 77 tokens, no
 * text_embeds, rank-0 int64 timestep, UNet with a fixed batch of 1, VAE encoder returning latent_sample,
 * float16 VAE decoder, PNDM scheduler config) — all run through the real onnxruntime-node.
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createImage } from "../pipelines/image.ts";
import { img2img } from "../pipelines/img2img.ts";
import { inpaint } from "../pipelines/inpaint.ts";
import { type DiffusionModel, loadDiffusionModel, verifyManifest } from "../pipelines/model-folder.ts";
import { buildModel, DT } from "../pipelines/onnx-builder.ts";
import { BatchNoise, STREAM } from "../pipelines/random.ts";
import { schedulerNameForClass } from "../pipelines/schedulers/index.ts";
import { encodePromptPair, txt2img } from "../pipelines/txt2img.ts";
import { AtelierError } from "../src/errors.ts";

const FIXTURE = "tests/fixtures/tiny-ldm";
const HIDDEN_W = [0.01, -0.02, 0.03, 0.005, -0.01, 0.02, 0.0, 0.015];

/** Writes an SD-1.5-shaped ONNX folder whose graphs compute simple, checkable functions. */
async function writeSdLikeFolder(dir: string): Promise<void> {
  const put = async (rel: string, data: string | Uint8Array) => {
    await mkdir(join(dir, rel, ".."), { recursive: true });
    await writeFile(join(dir, rel), data);
  };
  await put(
    "model_index.json",
    JSON.stringify({ _class_name: "OnnxStableDiffusionPipeline", _diffusers_version: "0.6.0" }),
  );
  await put(
    "scheduler/scheduler_config.json",
    JSON.stringify({
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
    }),
  );
  // text encoder: last_hidden_state[b, j, k] = id[b, j]·w[k]; pooler_output = mean over tokens.
  await put(
    "text_encoder/model.onnx",
    buildModel({
      inputs: [{ name: "input_ids", type: DT.int32, shape: ["batch", 77] }],
      outputs: [
        { name: "last_hidden_state", type: DT.float, shape: ["batch", 77, 8] },
        { name: "pooler_output", type: DT.float, shape: ["batch", 8] },
      ],
      initializers: [
        { name: "axis2", dims: [1], values: [2], type: DT.int64 },
        { name: "w", dims: [8], values: HIDDEN_W },
      ],
      nodes: [
        { op: "Cast", inputs: ["input_ids"], outputs: ["ids_f"], attrs: [{ name: "to", i: DT.float }] },
        { op: "Unsqueeze", inputs: ["ids_f", "axis2"], outputs: ["ids_3d"] },
        { op: "Mul", inputs: ["ids_3d", "w"], outputs: ["last_hidden_state"] },
        {
          op: "ReduceMean",
          inputs: ["last_hidden_state"],
          outputs: ["pooler_output"],
          attrs: [
            { name: "axes", ints: [1] },
            { name: "keepdims", i: 0 },
          ],
        },
      ],
    }),
  );
  // unet (fixed batch 1): out = 0.5·sample + mean(encoder_hidden_states) + 0.001·timestep.
  await put(
    "unet/model.onnx",
    buildModel({
      inputs: [
        { name: "sample", type: DT.float, shape: [1, 4, "height", "width"] },
        { name: "timestep", type: DT.int64, shape: [] },
        { name: "encoder_hidden_states", type: DT.float, shape: [1, 77, 8] },
      ],
      outputs: [{ name: "out_sample", type: DT.float, shape: [1, 4, "height", "width"] }],
      initializers: [
        { name: "axis3", dims: [1], values: [3], type: DT.int64 },
        { name: "half", dims: [], values: [0.5] },
        { name: "milli", dims: [], values: [0.001] },
      ],
      nodes: [
        {
          op: "ReduceMean",
          inputs: ["encoder_hidden_states"],
          outputs: ["m3"],
          attrs: [
            { name: "axes", ints: [1, 2] },
            { name: "keepdims", i: 1 },
          ],
        },
        { op: "Unsqueeze", inputs: ["m3", "axis3"], outputs: ["m4"] },
        { op: "Cast", inputs: ["timestep"], outputs: ["t_f"], attrs: [{ name: "to", i: DT.float }] },
        { op: "Mul", inputs: ["t_f", "milli"], outputs: ["t_s"] },
        { op: "Mul", inputs: ["sample", "half"], outputs: ["s1"] },
        { op: "Add", inputs: ["s1", "m4"], outputs: ["s2"] },
        { op: "Add", inputs: ["s2", "t_s"], outputs: ["out_sample"] },
      ],
    }),
  );
  await put("unet/config.json", JSON.stringify({ sample_size: 8, in_channels: 4 }));
  // vae encoder: latent c = (c + 1) · mean of the 8×8×3 pixels of its cell.
  const encW = Array.from({ length: 4 * 3 * 64 }, (_, i) => (Math.floor(i / 192) + 1) / 192);
  await put(
    "vae_encoder/model.onnx",
    buildModel({
      inputs: [{ name: "sample", type: DT.float, shape: ["batch", 3, "height", "width"] }],
      outputs: [{ name: "latent_sample", type: DT.float, shape: ["batch", 4, "lh", "lw"] }],
      initializers: [{ name: "enc_w", dims: [4, 3, 8, 8], values: encW }],
      nodes: [
        {
          op: "Conv",
          inputs: ["sample", "enc_w"],
          outputs: ["latent_sample"],
          attrs: [
            { name: "kernel_shape", ints: [8, 8] },
            { name: "strides", ints: [8, 8] },
          ],
        },
      ],
    }),
  );
  // vae decoder in float16: every pixel of a cell = 0.25 · Σ_c latent_c.
  await put(
    "vae_decoder/model.onnx",
    buildModel({
      inputs: [{ name: "latent_sample", type: DT.float16, shape: ["batch", 4, "lh", "lw"] }],
      outputs: [{ name: "sample", type: DT.float16, shape: ["batch", 3, "height", "width"] }],
      initializers: [{ name: "dec_w", dims: [4, 3, 8, 8], values: new Array(4 * 3 * 64).fill(0.25) }],
      nodes: [
        { op: "Cast", inputs: ["latent_sample"], outputs: ["lat_f"], attrs: [{ name: "to", i: DT.float }] },
        {
          op: "ConvTranspose",
          inputs: ["lat_f", "dec_w"],
          outputs: ["img_f"],
          attrs: [
            { name: "kernel_shape", ints: [8, 8] },
            { name: "strides", ints: [8, 8] },
          ],
        },
        { op: "Cast", inputs: ["img_f"], outputs: ["sample"], attrs: [{ name: "to", i: DT.float16 }] },
      ],
    }),
  );
  await put(
    "vae_decoder/config.json",
    JSON.stringify({ scaling_factor: 0.18215, block_out_channels: [128, 256, 512, 512] }),
  );
  for (const f of ["tokenizer.json", "special_tokens_map.json"])
    await cp(join(FIXTURE, "tokenizer", f), join(dir, "tokenizer", f));
  const tokConfig = JSON.parse(await readFile(join(FIXTURE, "tokenizer", "tokenizer_config.json"), "utf8"));
  await put("tokenizer/tokenizer_config.json", JSON.stringify({ ...tokConfig, model_max_length: 77 }));
}

let work: string;
let sdLike: DiffusionModel;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "atelier-models-"));
  await writeSdLikeFolder(join(work, "sd-like"));
  sdLike = await loadDiffusionModel(join(work, "sd-like"), { threads: 1 });
});

afterAll(async () => {
  await sdLike?.dispose();
  await rm(work, { recursive: true, force: true });
});

describe("the embedded tiny fixture", () => {
  it("loads with the manifest verified and settings read from its configs", async () => {
    expect(await verifyManifest(FIXTURE)).toBeGreaterThan(5);
    const model = await loadDiffusionModel(FIXTURE, { threads: 1 });
    try {
      const vae = JSON.parse(await readFile(join(FIXTURE, "vae_decoder", "config.json"), "utf8"));
      expect(model.scalingFactor).toBe(vae.scaling_factor);
      const scheduler = JSON.parse(
        await readFile(join(FIXTURE, "scheduler", "scheduler_config.json"), "utf8"),
      );
      expect(model.defaultScheduler).toBe(schedulerNameForClass(scheduler._class_name));
      expect([model.width, model.height, model.latentChannels, model.vaeScaleFactor]).toEqual([64, 64, 4, 8]);
      expect(model.usesPooled).toBe(true);
      const [prompt, empty] = await model.encodeText(["a red circle", ""]);
      expect(prompt!.tokenShape[1]).toBe(32);
      expect(prompt!.pooled).toHaveLength(32);
      expect([...prompt!.tokens]).not.toEqual([...empty!.tokens]);
      const again = await model.encodeText([""]);
      expect([...again[0]!.tokens]).toEqual([...empty!.tokens]);
    } finally {
      await model.dispose();
    }
  });

  it("refuses a folder whose file differs from manifest.json, naming the file", async () => {
    const copy = join(work, "tampered");
    await cp(FIXTURE, copy, { recursive: true });
    const path = join(copy, "unet", "config.json");
    await writeFile(path, `${await readFile(path, "utf8")} `);
    const error = await loadDiffusionModel(copy, { threads: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AtelierError);
    expect((error as AtelierError).param).toBe("unet/config.json");
    expect((error as Error).message).toMatch(/unet\/config\.json does not match manifest\.json/);
  });

  it("rejects a folder without model_index.json", async () => {
    await expect(loadDiffusionModel(join(work, "nowhere"))).rejects.toThrow(/model_index\.json/);
  });
});

describe("an SD-1.5-style export", () => {
  it("reads the PNDM config (→ dpmpp_2m), the default scaling factor and the 77-token int32 encoder", async () => {
    expect(sdLike.defaultScheduler).toBe("dpmpp_2m");
    expect(sdLike.scalingFactor).toBe(0.18215);
    expect(sdLike.usesPooled).toBe(false);
    const [c] = await sdLike.encodeText(["a red circle"]);
    expect(c!.tokenShape).toEqual([77, 8]);
    // Token ids of the fixture vocabulary: a = 3, red = 46, circle = 15, then padding (0).
    expect(c!.tokens[0 * 8 + 1]).toBeCloseTo(3 * HIDDEN_W[1]!, 6);
    expect(c!.tokens[1 * 8 + 2]).toBeCloseTo(46 * HIDDEN_W[2]!, 6);
    expect(c!.tokens[2 * 8 + 0]).toBeCloseTo(15 * HIDDEN_W[0]!, 6);
    expect(c!.tokens[3 * 8 + 0]).toBe(0);
  });

  it("runs a fixed-batch-1 UNet in chunks with a rank-0 int64 timestep (truncated like numpy)", async () => {
    const [a, b] = await sdLike.encodeText(["a red circle", "blue"]);
    const denoiser = sdLike.createDenoiser([a!, b!], { width: 64, height: 64 });
    const sample = Float32Array.from({ length: 2 * 4 * 64 }, (_, i) => Math.sin(i));
    const out = await denoiser.run(sample, 946.7);
    const mean = (t: Float32Array) => t.reduce((s, v) => s + v, 0) / t.length;
    for (const [k, c] of [a!, b!].entries())
      for (const i of [0, 100, 255]) {
        const j = k * 256 + i;
        expect(out[j]).toBeCloseTo(0.5 * sample[j]! + mean(c.tokens) + 0.946, 5);
      }
  });

  it("decodes through a float16 VAE with the scaling factor undone", async () => {
    const latents = Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => ((i % 7) - 3) * 0.01);
    const pixels = await sdLike.decodeLatents(latents, 1, 8, 8);
    expect(pixels).toHaveLength(3 * 64 * 64);
    // Pixel (0, 0) of every channel is 0.25 · Σ_c latent_c(0, 0) / 0.18215, within float16 precision.
    const expected = (0.25 * [0, 64, 128, 192].reduce((s, o) => s + latents[o]!, 0)) / 0.18215;
    expect(pixels[0]).toBeCloseTo(expected, 2);
    expect(pixels[64 * 64]).toBeCloseTo(expected, 2);
  });

  it("encodes with a latent_sample VAE encoder and scales the latents", async () => {
    const image = createImage(64, 64);
    image.data.fill(191); // 191/127.5 − 1 = 0.498…
    const pixels = Float32Array.from({ length: 3 * 64 * 64 }, () => 191 / 127.5 - 1);
    const latents = await sdLike.encodeImages(pixels, 1, 64, 64, new BatchNoise([1], STREAM.vae));
    for (const c of [0, 3]) expect(latents[c * 64]).toBeCloseTo((c + 1) * (191 / 127.5 - 1) * 0.18215, 5);
  });

  it("generates with txt2img, img2img and inpaint (CFG split over the fixed batch)", async () => {
    const pair = await encodePromptPair(sdLike, "a red circle");
    const t = await txt2img(sdLike, pair, { steps: 4, guidance: 7.5, seed: 3, numImages: 2 });
    expect(t.scheduler).toBe("dpmpp_2m");
    expect(t.images.map((i) => [i.width, i.height])).toEqual([
      [64, 64],
      [64, 64],
    ]);
    const source = t.images[0]!;
    const i2i = await img2img(sdLike, pair, source, { steps: 10, strength: 0.5, guidance: 7.5, seed: 4 });
    expect(i2i.timesteps).toHaveLength(5);
    const mask = { width: 64, height: 64, data: new Uint8Array(64 * 64).fill(255, 0, 64 * 32) };
    const inp = await inpaint(sdLike, pair, source, mask, { steps: 4, guidance: 7.5, seed: 5 });
    expect(
      Buffer.from(inp.images[0]!.data.subarray(64 * 32 * 3)).equals(
        Buffer.from(source.data.subarray(64 * 32 * 3)),
      ),
    ).toBe(true);
  });
});
