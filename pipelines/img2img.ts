/**
 * Image-to-image (SDEdit, Meng et al. 2022; diffusers' StableDiffusionImg2ImgPipeline): encode the image
 * with the VAE, noise it to the timestep that `strength` selects, and denoise from there. strength = 1
 * starts from (almost) pure noise; small strengths keep the composition.
 */

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
import type { RgbImage } from "./image.ts";
import type { DiffusionModel } from "./model-folder.ts";
import { BatchNoise, STREAM } from "./random.ts";

export interface Img2ImgOptions extends GenerateOptions {
  /** How much to change the image, (0, 1] (default 0.75): the share of the schedule that is run. */
  strength?: number;
}

export async function img2img(
  model: DiffusionModel,
  conditioning: ConditioningInput,
  image: RgbImage,
  options: Img2ImgOptions = {},
): Promise<GenerateResult> {
  // 1. Check inputs (output size defaults to the image's and must equal it).
  checkInputImage(image);
  const opts = checkOptions(model, options, image);
  const strength = options.strength ?? 0.75;
  const scheduler = makeScheduler(model, opts.schedulerName, options.schedulerConfig);
  scheduler.setTimesteps(opts.steps);
  const timesteps = timestepsForStrength(scheduler, opts.steps, strength);
  checkSameSize(image, opts);
  throwIfAborted(options.signal);

  // 2. Conditioning.
  const denoiser = prepareDenoiser(model, conditioning, opts);

  // 3. Timesteps: the last ⌊steps·strength⌋ of the schedule (set in stage 1, where strength is checked).

  // 4. Latents: the image's latents noised to the first timestep, x_t = q(x_t | x₀).
  const { latents: initLatents, encode } = await encodeInputImage(model, image, opts);
  const noise = new Float32Array(initLatents.length);
  new BatchNoise(opts.seeds, STREAM.latents).fillNormal(noise);
  const latents = scheduler.addNoise(initLatents, noise, timesteps[0]!);

  // 5. Denoising loop.
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
  });
  const denoise = since(denoiseStart);

  // 6. Decode.
  const decodeStart = performance.now();
  const images = await decodeImages(model, latents, opts);
  return {
    images,
    seeds: opts.seeds,
    scheduler: scheduler.name,
    timesteps,
    timings: { encode, denoise, decode: since(decodeStart), perStep, unet },
  };
}
