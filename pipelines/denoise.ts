/**
 * What txt2img, img2img and inpaint share: option checking, the conditioning batch, the scheduler,
 * the denoising loop (CFG in one batched denoiser call, onStep, cancellation) and VAE decoding.
 *
 * The loop allocates its buffers once: the denoiser input (B or 2B latents), the guided ε and the
 * latents, which the scheduler updates in place; nothing is copied between steps except the latents
 * into the denoiser's input batch.
 */
import { AtelierError, invalid } from "../src/errors.ts";
import { applyGuidance, checkGuidance, usesGuidance } from "./guidance.ts";
import { createImage, type RgbImage } from "./image.ts";
import type { Conditioning, Denoiser, DiffusionModel } from "./model-folder.ts";
import { BatchNoise, type NoiseSource, STREAM, seedsFor } from "./random.ts";
import { createScheduler, type Scheduler, type SchedulerName } from "./schedulers/index.ts";

export interface StepEvent {
  /** 0-based index of the step just taken. */
  step: number;
  /** Total steps of this run (after img2img / inpaint strength). */
  steps: number;
  timestep: number;
  /** The live latents after this step [B, C, h, w]: read (or copy), do not modify. */
  latents: Float32Array;
}

export interface GenerateOptions {
  /** Scheduler steps, 1..1000 (default 20; img2img/inpaint run ⌊steps·strength⌋ of them). */
  steps?: number;
  /** Classifier-free guidance scale (default 5; ≤ 1 runs the conditional half only). */
  guidance?: number;
  /** Scheduler name (default: the model folder's own scheduler). */
  scheduler?: string;
  /** diffusers keys overriding the model's scheduler_config (e.g. {use_karras_sigmas: true}). */
  schedulerConfig?: Record<string, unknown>;
  /** Base seed: image i uses seed + i (default: a random uint32, reported back). */
  seed?: number;
  /** One seed per image (overrides `seed`). */
  seeds?: number[];
  /** Images to generate (default 1, or seeds.length). */
  numImages?: number;
  /** DDIM's η (default 0). */
  eta?: number;
  /** Output size in pixels, multiples of the VAE factor (default: the model's native size). */
  width?: number;
  height?: number;
  onStep?: (event: StepEvent) => void;
  signal?: AbortSignal;
}

/** Conditional (and, for guidance > 1, unconditional) conditioning, from the text encoder or projection layers. */
export interface ConditioningInput {
  /** One conditioning for all images, or one per image. */
  cond: Conditioning | Conditioning[];
  /** The model's learned null conditioning (encode("")) or a negative prompt; needed when guidance > 1. */
  uncond?: Conditioning | Conditioning[] | null;
}

export interface Timings {
  /** VAE encoding of the input image (0 for txt2img), ms. */
  encode: number;
  /** The whole denoising loop, ms. */
  denoise: number;
  decode: number;
  /** Per denoising step, ms. */
  perStep: number[];
  /** Time inside the denoiser calls, ms (denoise − unet is the loop's own overhead). */
  unet: number;
}

export interface GenerateResult {
  images: RgbImage[];
  /** The seed each image used (reproduces it with `seeds: [s]`). */
  seeds: number[];
  scheduler: SchedulerName;
  /** Timesteps actually run. */
  timesteps: number[];
  timings: Timings;
}

export const MAX_STEPS = 1000;
export const MAX_IMAGES = 16;

/** Cancellation via AbortSignal: an AtelierError with code "cancelled" (name "AbortError"). */
export class CancelledError extends AtelierError {
  constructor(reason?: unknown) {
    const why =
      reason instanceof Error ? `: ${reason.message}` : typeof reason === "string" ? `: ${reason}` : "";
    super(`generation cancelled${why}`, { status: 499, code: "cancelled" });
    this.name = "AbortError";
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError(signal.reason);
}

export interface CheckedOptions {
  steps: number;
  guidance: number;
  guided: boolean;
  schedulerName: string;
  seeds: number[];
  batch: number;
  eta: number;
  width: number;
  height: number;
}

/**
 * Stage 1 of every pipeline: validates options, naming the offending field. `size` is the default output
 * size (an input image's for img2img / inpaint, else the model's native size).
 */
export function checkOptions(
  model: DiffusionModel,
  options: GenerateOptions,
  size: { width: number; height: number } = model,
): CheckedOptions {
  const steps = options.steps ?? 20;
  if (!Number.isInteger(steps) || steps < 1 || steps > MAX_STEPS)
    throw invalid("steps", `must be an integer in [1, ${MAX_STEPS}], got ${steps}`);
  const guidance = checkGuidance(options.guidance ?? 5);
  const eta = options.eta ?? 0;
  if (typeof eta !== "number" || !Number.isFinite(eta) || eta < 0 || eta > 1)
    throw invalid("eta", `must be a number in [0, 1], got ${eta}`);
  const batch = options.numImages ?? options.seeds?.length ?? 1;
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_IMAGES)
    throw invalid("numImages", `must be an integer in [1, ${MAX_IMAGES}], got ${batch}`);
  const seeds = seedsFor(batch, options.seed, options.seeds);
  const dimension = (value: number | undefined, fallback: number, name: string) => {
    const v = value ?? fallback;
    const f = model.vaeScaleFactor;
    if (!Number.isInteger(v) || v < f || v > 4096 || v % f !== 0)
      throw invalid(name, `must be a multiple of ${f} in [${f}, 4096], got ${v}`);
    return v;
  };
  return {
    steps,
    guidance,
    guided: usesGuidance(guidance),
    schedulerName: options.scheduler ?? model.defaultScheduler,
    seeds,
    batch,
    eta,
    width: dimension(options.width, size.width, "width"),
    height: dimension(options.height, size.height, "height"),
  };
}

/** Stage 2: the conditioning batch [uncond × B | cond × B] (or [cond × B]) bound to the denoiser once. */
export function prepareDenoiser(
  model: DiffusionModel,
  input: ConditioningInput,
  opts: CheckedOptions,
): Denoiser {
  const expand = (c: Conditioning | Conditioning[], name: string): Conditioning[] => {
    if (!Array.isArray(c)) return Array.from({ length: opts.batch }, () => c);
    if (c.length !== opts.batch) throw invalid(name, `has ${c.length} entries for ${opts.batch} images`);
    return c;
  };
  if (!input?.cond) throw invalid("conditioning.cond", "is required");
  const cond = expand(input.cond, "conditioning.cond");
  if (!opts.guided) return model.createDenoiser(cond, opts);
  if (!input.uncond)
    throw invalid("conditioning.uncond", "is required for guidance > 1 (use the encoded empty prompt)");
  return model.createDenoiser([...expand(input.uncond, "conditioning.uncond"), ...cond], opts);
}

/** Stage 3 (part): a scheduler from the model's config, with per-request overrides. */
export function makeScheduler(
  model: DiffusionModel,
  name: string,
  overrides?: Record<string, unknown>,
): Scheduler {
  return createScheduler(name, { ...model.schedulerConfig, ...overrides });
}

/**
 * diffusers' get_timesteps for img2img / inpaint: run the last ⌊steps·strength⌋ timesteps and tell the
 * scheduler where it starts.
 */
export function timestepsForStrength(scheduler: Scheduler, steps: number, strength: number): number[] {
  if (typeof strength !== "number" || !(strength > 0 && strength <= 1))
    throw invalid("strength", `must be in (0, 1], got ${strength}`);
  const init = Math.min(Math.floor(steps * strength), steps);
  const start = Math.max(steps - init, 0);
  const timesteps = scheduler.timesteps.slice(start * scheduler.order);
  if (timesteps.length < 1)
    throw invalid(
      "strength",
      `${strength} × ${steps} steps leaves no denoising step; raise strength or steps`,
    );
  scheduler.setBeginIndex(start * scheduler.order);
  return timesteps;
}

export interface LoopInput {
  scheduler: Scheduler;
  denoiser: Denoiser;
  timesteps: number[];
  /** Updated in place. */
  latents: Float32Array;
  guidance: number;
  guided: boolean;
  eta: number;
  generator: NoiseSource;
  onStep?: (event: StepEvent) => void;
  signal?: AbortSignal;
  /** Called after each scheduler step, before onStep (inpaint's latent blending). */
  afterStep?: (index: number, latents: Float32Array) => void;
}

/** Stage 5: the denoising loop. Returns per-step times and the time spent inside the denoiser (ms). */
export async function denoiseLoop(input: LoopInput): Promise<{ perStep: number[]; unet: number }> {
  const { scheduler, denoiser, timesteps, latents, guidance, guided, eta, generator } = input;
  const n = latents.length;
  const modelInput = new Float32Array(guided ? 2 * n : n);
  const guidedEps = guided ? new Float32Array(n) : null;
  const firstHalf = modelInput.subarray(0, n);
  const perStep: number[] = [];
  let unet = 0;
  for (let i = 0; i < timesteps.length; i++) {
    throwIfAborted(input.signal);
    const started = performance.now();
    const t = timesteps[i]!;
    let unetInput: Float32Array;
    if (guided) {
      const scaled = scheduler.scaleModelInput(latents, t, firstHalf);
      if (scaled !== firstHalf) firstHalf.set(scaled);
      modelInput.copyWithin(n, 0, n);
      unetInput = modelInput;
    } else {
      unetInput = scheduler.scaleModelInput(latents, t, modelInput);
    }
    const unetStart = performance.now();
    const output = await denoiser.run(unetInput, t);
    unet += performance.now() - unetStart;
    const eps = guidedEps ? applyGuidance(output, guidance, guidedEps) : output;
    scheduler.step(eps, t, latents, { eta, generator, out: latents });
    input.afterStep?.(i, latents);
    perStep.push(performance.now() - started);
    input.onStep?.({ step: i, steps: timesteps.length, timestep: t, latents });
  }
  throwIfAborted(input.signal);
  return { perStep, unet };
}

/** Stage 6: VAE decode, then [−1, 1] → 8-bit RGB like diffusers ((x/2 + 0.5) clamped, ×255, rounded). */
export async function decodeImages(
  model: DiffusionModel,
  latents: Float32Array,
  opts: CheckedOptions,
): Promise<RgbImage[]> {
  const f = model.vaeScaleFactor;
  const pixels = await model.decodeLatents(latents, opts.batch, opts.height / f, opts.width / f);
  return pixelsToImages(pixels, opts.batch, opts.width, opts.height);
}

export function pixelsToImages(
  pixels: Float32Array,
  batch: number,
  width: number,
  height: number,
): RgbImage[] {
  const plane = width * height;
  if (pixels.length !== batch * 3 * plane)
    throw new AtelierError(`VAE decoder returned ${pixels.length} values, expected ${batch * 3 * plane}`, {
      status: 500,
      code: "model_invalid",
    });
  return Array.from({ length: batch }, (_, b) => {
    const image = createImage(width, height);
    for (let c = 0; c < 3; c++) {
      const base = (b * 3 + c) * plane;
      for (let i = 0; i < plane; i++) {
        const v = pixels[base + i]! / 2 + 0.5;
        image.data[i * 3 + c] = Math.round(Math.min(1, Math.max(0, v)) * 255);
      }
    }
    return image;
  });
}

/** RGB images → [B, 3, H, W] in [−1, 1] (the VAE encoder's input). */
export function imagesToPixels(images: RgbImage[]): Float32Array {
  const { width, height } = images[0]!;
  const plane = width * height;
  const out = new Float32Array(images.length * 3 * plane);
  images.forEach((image, b) => {
    for (let c = 0; c < 3; c++) {
      const base = (b * 3 + c) * plane;
      for (let i = 0; i < plane; i++) out[base + i] = image.data[i * 3 + c]! / 127.5 - 1;
    }
  });
  return out;
}

/**
 * img2img / inpaint, stage 4: the input image's VAE latents, once per image of the batch (each drawing its
 * posterior sample from its own seed's VAE stream), and the time it took.
 */
export async function encodeInputImage(
  model: DiffusionModel,
  image: RgbImage,
  opts: CheckedOptions,
): Promise<{ latents: Float32Array; encode: number }> {
  const start = performance.now();
  const pixels = imagesToPixels(Array.from({ length: opts.batch }, () => image));
  const noise = new BatchNoise(opts.seeds, STREAM.vae);
  const latents = await model.encodeImages(pixels, opts.batch, opts.height, opts.width, noise);
  return { latents, encode: since(start) };
}

/** img2img / inpaint: the input must be an RGB image of the output size. */
export function checkInputImage(image: RgbImage, field = "image"): RgbImage {
  if (
    !image ||
    !(image.data instanceof Uint8Array) ||
    !Number.isInteger(image.width) ||
    !Number.isInteger(image.height) ||
    image.data.length !== image.width * image.height * 3
  )
    throw invalid(field, "must be an RGB image (width × height × 3 bytes)");
  return image;
}

export function checkSameSize(image: RgbImage, opts: CheckedOptions, field = "image"): void {
  if (image.width !== opts.width || image.height !== opts.height)
    throw invalid(field, `is ${image.width}×${image.height}; expected ${opts.width}×${opts.height}`);
}

export const since = (start: number) => performance.now() - start;
