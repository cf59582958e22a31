/**
 * Text-to-image: denoise pure noise under the given conditioning (diffusers' StableDiffusionPipeline).
 * Conditioning comes in precomputed — from the model's text encoder (`encodePrompt`) or from the
 * projection layers — so the pipeline never sees raw text.
 */
import {
  type ConditioningInput,
  checkOptions,
  decodeImages,
  denoiseLoop,
  type GenerateOptions,
  type GenerateResult,
  makeScheduler,
  prepareDenoiser,
  since,
  throwIfAborted,
} from "./denoise.ts";
import type { Conditioning, DiffusionModel } from "./model-folder.ts";
import { BatchNoise, STREAM } from "./random.ts";

export async function txt2img(
  model: DiffusionModel,
  conditioning: ConditioningInput,
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  // 1. Check inputs.
  const opts = checkOptions(model, options);
  const scheduler = makeScheduler(model, opts.schedulerName, options.schedulerConfig);
  throwIfAborted(options.signal);

  // 2. Conditioning: bound to the denoiser once for all steps.
  const denoiser = prepareDenoiser(model, conditioning, opts);

  // 3. Timesteps.
  scheduler.setTimesteps(opts.steps);
  const timesteps = scheduler.timesteps;

  // 4. Latents: N(0, I) per image seed, scaled to the scheduler's initial σ.
  const f = model.vaeScaleFactor;
  const latents = new Float32Array(opts.batch * model.latentChannels * (opts.height / f) * (opts.width / f));
  new BatchNoise(opts.seeds, STREAM.latents).fillNormal(latents);
  const sigma = scheduler.initNoiseSigma;
  if (sigma !== 1) for (let i = 0; i < latents.length; i++) latents[i] = latents[i]! * sigma;

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
    timings: { encode: 0, denoise, decode: since(decodeStart), perStep, unet },
  };
}

/** The native text path: one prompt through the model's tokenizer and text encoder. */
export async function encodePrompt(model: DiffusionModel, text: string): Promise<Conditioning> {
  return (await model.encodeText([text]))[0]!;
}

/** Conditional and unconditional conditioning for a prompt; the unconditional one is the negative prompt, or "" (the learned null conditioning). */
export async function encodePromptPair(
  model: DiffusionModel,
  prompt: string,
  negative = "",
): Promise<{ cond: Conditioning; uncond: Conditioning }> {
  const [cond, uncond] = await model.encodeText([prompt, negative]);
  return { cond: cond!, uncond: uncond! };
}
