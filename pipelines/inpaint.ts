/**
 * Inpainting with an ordinary (4-channel) denoiser, as diffusers' StableDiffusionInpaintPipeline does
 * for such UNets (RePaint-style latent blending, Lugmayr et al. 2022): after every step the latents
 * outside the mask are replaced by the original image's latents noised to the next timestep, so only
 * the masked region is generated while it stays consistent with its surroundings.
 *
 * Mask: 255 = repaint, 0 = keep (soft values allowed). A latent cell is repainted when any pixel it
 * covers is masked, so the generator is free along the mask's edge. The decoded image is finally
 * composited in pixel space, out = (1 − m)·input + m·generated with m = mask/255: pixels with mask 0 are
 * exact copies of the input (tolerance 0), pixels with mask 255 are generated, soft values blend.
 */
import { invalid } from "../src/errors.ts";
import {
  type ConditioningInput,
  checkInputImage,
  checkOptions,
  checkSameSize,
  decodeImages,
  denoiseLoop,
  encodeInputImage,
  type GenerateOptions,
  type GenerateResult,
  makeScheduler,
  prepareDenoiser,
  since,
  throwIfAborted,
  timestepsForStrength,
} from "./denoise.ts";
import { createImage, type Mask, type RgbImage } from "./image.ts";
import type { DiffusionModel } from "./model-folder.ts";
import { BatchNoise, STREAM } from "./random.ts";

export interface InpaintOptions extends GenerateOptions {
  /** (0, 1], default 1: the masked region starts from pure noise; lower keeps some of the original there. */
  strength?: number;
}

function checkMask(mask: Mask, image: RgbImage): Mask {
  if (!mask || !(mask.data instanceof Uint8Array) || mask.data.length !== mask.width * mask.height)
    throw invalid("mask", "must be a single-channel mask (width × height bytes, 255 = repaint)");
  if (mask.width !== image.width || mask.height !== image.height)
    throw invalid(
      "mask",
      `is ${mask.width}×${mask.height}; it must match the image, ${image.width}×${image.height}`,
    );
  return mask;
}

/** Latent-grid mask: 1 where any covered pixel is masked. */
function latentMask(mask: Mask, factor: number, channels: number, batch: number): Float32Array {
  const w = mask.width / factor;
  const h = mask.height / factor;
  const plane = new Float32Array(w * h);
  for (let y = 0; y < mask.height; y++)
    for (let x = 0; x < mask.width; x++)
      if (mask.data[y * mask.width + x]! > 0) plane[Math.floor(y / factor) * w + Math.floor(x / factor)] = 1;
  const out = new Float32Array(batch * channels * w * h);
  for (let k = 0; k < batch * channels; k++) out.set(plane, k * w * h);
  return out;
}

function composite(input: RgbImage, generated: RgbImage, mask: Mask): RgbImage {
  const out = createImage(input.width, input.height);
  for (let i = 0; i < mask.data.length; i++) {
    const m = mask.data[i]! / 255;
    for (let c = 0; c < 3; c++) {
      const k = i * 3 + c;
      out.data[k] = m === 0 ? input.data[k]! : Math.round((1 - m) * input.data[k]! + m * generated.data[k]!);
    }
  }
  return out;
}

export async function inpaint(
  model: DiffusionModel,
  conditioning: ConditioningInput,
  image: RgbImage,
  mask: Mask,
  options: InpaintOptions = {},
): Promise<GenerateResult> {
  // 1. Check inputs: image and mask of the output size.
  checkInputImage(image);
  checkMask(mask, image);
  const opts = checkOptions(model, options, image);
  checkSameSize(image, opts);
  const strength = options.strength ?? 1;
  const scheduler = makeScheduler(model, opts.schedulerName, options.schedulerConfig);
  scheduler.setTimesteps(opts.steps);
  const timesteps = timestepsForStrength(scheduler, opts.steps, strength);
  throwIfAborted(options.signal);

  // 2. Conditioning.
  const denoiser = prepareDenoiser(model, conditioning, opts);

  // 3. Timesteps: the last ⌊steps·strength⌋ of the schedule (stage 1).

  // 4. Latents: the image's latents, the latent mask, and the starting point — pure noise at full
  //    strength (diffusers' is_strength_max), else the image noised to the first timestep.
  const { latents: imageLatents, encode } = await encodeInputImage(model, image, opts);
  const m = latentMask(mask, model.vaeScaleFactor, model.latentChannels, opts.batch);
  const noise = new Float32Array(imageLatents.length);
  new BatchNoise(opts.seeds, STREAM.latents).fillNormal(noise);
  let latents: Float32Array;
  if (strength === 1) {
    const sigma = scheduler.initNoiseSigma;
    latents = noise.map((v) => v * sigma);
  } else {
    latents = scheduler.addNoise(imageLatents, noise, timesteps[0]!);
  }

  // 5. Denoising loop; after each step the kept region is reset to the original at the next noise level
  //    (the clean original after the last step).
  const known = new Float32Array(imageLatents.length);
  const afterStep = (i: number, current: Float32Array) => {
    const proper =
      i < timesteps.length - 1
        ? scheduler.addNoise(imageLatents, noise, timesteps[i + 1]!, known)
        : imageLatents;
    for (let k = 0; k < current.length; k++) if (m[k] === 0) current[k] = proper[k]!;
  };
  const denoiseStart = performance.now();
  const { perStep, unet } = await denoiseLoop({
    scheduler,
    denoiser,
    timesteps,
    latents,
    guidance: opts.guidance,
    guided: opts.guided,
    eta: opts.eta,
    generator: new BatchNoise(opts.seeds, STREAM.scheduler),
    onStep: options.onStep,
    signal: options.signal,
    afterStep,
  });
  const denoise = since(denoiseStart);

  // 6. Decode, then composite so that unmasked pixels are the input's.
  const decodeStart = performance.now();
  const images = (await decodeImages(model, latents, opts)).map((generated) =>
    composite(image, generated, mask),
  );
  return {
    images,
    seeds: opts.seeds,
    scheduler: scheduler.name,
    timesteps,
    timings: { encode, denoise, decode: since(decodeStart), perStep, unet },
  };
}
