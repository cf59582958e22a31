/**
 * CI smoke test of the training stack: training/smoke.sh trains tiny configs of every stage for a few steps
 * on a freshly exported tiny dataset, resumes once and exports (a decoder fine-tune from the export's ONNX
 * included); the exports are then loaded in onnxruntime-node and run one guided DDIM denoising step and a VAE
 * decode; the projection trained on that export (and warm-started from itself with --init) loads against it
 * and conditions a plan.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoTokenizer, env } from "@huggingface/transformers";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { loadDiffusionModel } from "../pipelines/model-folder.ts";
import { createScheduler } from "../pipelines/schedulers/index.ts";
import { Planner } from "../planner/planner.ts";
import { loadProjection } from "../projection/projection.ts";

const PYTHON = process.env.ATELIER_PYTHON ?? "/usr/bin/python3";
const hasTorch = spawnSync(PYTHON, ["-c", "import torch, onnx"], { encoding: "utf8" }).status === 0;
const reason = `${PYTHON} cannot import torch and onnx (apt-get install -y python3-torch python3-onnx libopenblas0-pthread)`;
if (!hasTorch) console.warn(`training smoke test skipped: ${reason}`);

describe("training smoke (training/smoke.sh)", () => {
  const work = mkdtempSync(join(tmpdir(), "atelier-smoke-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it.skipIf(!hasTorch)(
    "trains, resumes and exports every stage; the export denoises one step",
    async () => {
      const dest = join(work, "ldm");
      const result = spawnSync("bash", ["training/smoke.sh", dest], { encoding: "utf8", timeout: 170_000 });
      expect(result.status, result.stderr.slice(-3000)).toBe(0);
      expect(result.stdout).toContain("resumed");

      // Tuning the text encoder leaves the U-Net's file as it was and records itself in the manifest.
      const manifest = JSON.parse(readFileSync(join(dest, "manifest.json"), "utf8"));
      const untuned = JSON.parse(readFileSync(`${dest}-untuned/manifest.json`, "utf8"));
      expect(manifest.stages.text_encoder.trained).toMatch(/^text encoder only/);
      expect(manifest.files["unet/model.onnx"].sha256).toBe(untuned.files["unet/model.onnx"].sha256);
      expect(manifest.files["text_encoder/model.onnx"].sha256).not.toBe(
        untuned.files["text_encoder/model.onnx"].sha256,
      );

      // The decoder fine-tune read back from the export's ONNX changes the decoder's file alone and records
      // where it started; the decoder it wrote gives the PyTorch outputs stored with it.
      const decoderTuned = JSON.parse(readFileSync(`${dest}-decoder/manifest.json`, "utf8"));
      expect(decoderTuned.stages.vae.decoder_fine_tuned_from.file).toBe(`${dest} (ONNX export)`);
      for (const [file, entry] of Object.entries<{ sha256: string }>(manifest.files))
        if (file !== "vae_decoder/model.onnx" && file !== "reference.json")
          expect(decoderTuned.files[file].sha256, file).toBe(entry.sha256);
      expect(decoderTuned.files["vae_decoder/model.onnx"].sha256).not.toBe(
        manifest.files["vae_decoder/model.onnx"].sha256,
      );
      const decoderReference = JSON.parse(readFileSync(`${dest}-decoder/reference.json`, "utf8")).vae_decoder;
      const { dims, amp, phase } = decoderReference.inputs.latent_sample;
      const latentIn = Float32Array.from(
        { length: dims.reduce((a: number, b: number) => a * b, 1) },
        (_, i) => Math.fround(amp * Math.sin(0.37 * i + phase)),
      );
      const tunedDecoder = await ort.InferenceSession.create(
        join(`${dest}-decoder`, "vae_decoder/model.onnx"),
      );
      const decoded = await tunedDecoder.run({ latent_sample: new ort.Tensor("float32", latentIn, dims) });
      for (const [i, v] of decoderReference.outputs.sample.head.entries())
        expect((decoded.sample!.data as Float32Array)[i]).toBeCloseTo(v, 3);

      env.allowRemoteModels = false;
      env.localModelPath = work;
      const tokenizer = await AutoTokenizer.from_pretrained("ldm/tokenizer");
      const encoded = tokenizer(["a red circle on a white background", ""], {
        padding: "max_length",
        max_length: 48,
        truncation: true,
      });
      const text = await ort.InferenceSession.create(join(dest, "text_encoder/model.onnx"));
      const cond = await text.run({ input_ids: encoded.input_ids as unknown as ort.Tensor });
      // …and its null (the empty prompt, row 2) too: every mode's unconditional branch stays the same.
      const untunedText = await ort.InferenceSession.create(
        join(`${dest}-untuned`, "text_encoder/model.onnx"),
      );
      const before = await untunedText.run({ input_ids: encoded.input_ids as unknown as ort.Tensor });
      const row = (t: ort.Tensor, i: number) => {
        const size = t.size / t.dims[0]!;
        return [...(t.data as Float32Array).subarray(i * size, (i + 1) * size)];
      };
      for (const output of ["last_hidden_state", "pooler_output"]) {
        expect(row(cond[output]!, 1), output).toEqual(row(before[output]!, 1));
        expect(row(cond[output]!, 0), output).not.toEqual(row(before[output]!, 0));
      }

      const schedulerConfig = JSON.parse(readFileSync(join(dest, "scheduler/scheduler_config.json"), "utf8"));
      const scheduler = createScheduler("ddim", schedulerConfig);
      scheduler.setTimesteps(20);
      const t = scheduler.timesteps[0];
      const latent = Float32Array.from({ length: 256 }, (_, i) => Math.sin(i * 1.7));
      const unet = await ort.InferenceSession.create(join(dest, "unet/model.onnx"));
      const both = new Float32Array(512);
      both.set(latent);
      both.set(latent, 256);
      const { out_sample } = await unet.run({
        sample: new ort.Tensor("float32", both, [2, 4, 8, 8]),
        timestep: new ort.Tensor("float32", Float32Array.from([t, t]), [2]),
        encoder_hidden_states: cond.last_hidden_state,
        text_embeds: cond.pooler_output,
      });
      const eps = out_sample.data as Float32Array;
      const guided = latent.map((_, i) => eps[256 + i] + 5 * (eps[i] - eps[256 + i]));
      const { prevSample, predOriginalSample } = scheduler.step(guided, t, latent);
      expect(prevSample.every(Number.isFinite)).toBe(true);

      const scale = JSON.parse(readFileSync(join(dest, "vae_decoder/config.json"), "utf8")).scaling_factor;
      const decoder = await ort.InferenceSession.create(join(dest, "vae_decoder/model.onnx"));
      const x0 = Float32Array.from(predOriginalSample ?? prevSample, (v) => v / scale);
      const { sample } = await decoder.run({ latent_sample: new ort.Tensor("float32", x0, [1, 4, 8, 8]) });
      expect([...sample.dims]).toEqual([1, 3, 64, 64]);
      expect((sample.data as Float32Array).every(Number.isFinite)).toBe(true);

      // The projection trained on this export (warm-started once) loads against it and conditions a plan.
      expect(result.stdout).toContain("initialised from");
      const planner = await Planner.load("tests/fixtures/tiny-planner");
      const ldm = await loadDiffusionModel(dest, { threads: 1 });
      const projection = await loadProjection(`${dest}-projection`, { planner, denoiser: ldm });
      try {
        expect(projection.manifest.training).toMatchObject({
          steps: 2,
          init: expect.stringContaining("projection-tiny.pt"),
        });
        // The export's reference case: the runtime must give the training code's numbers.
        const reference = JSON.parse(readFileSync(`${dest}-projection/reference.json`, "utf8")).cases[0];
        const { cond } = await projection.condition(planner, reference.messages, reference.plan);
        const head = Array.from(cond.tokens.slice(0, 16));
        for (const [i, v] of head.entries())
          expect(v).toBeCloseTo(reference.outputs.encoder_hidden_states.head[i], 3);
      } finally {
        await projection.dispose();
        await ldm.dispose();
        await planner.dispose();
      }
    },
    180_000,
  );
});
