/** Public surface of the diffusion side: model folders, pipelines, schedulers, noise, guidance, image I/O. */
export {
  CancelledError,
  type ConditioningInput,
  type GenerateOptions,
  type GenerateResult,
  MAX_IMAGES,
  MAX_STEPS,
  type StepEvent,
  type Timings,
} from "./denoise.ts";
export { applyGuidance, checkGuidance, usesGuidance } from "./guidance.ts";
export {
  createImage,
  decodeBase64Png,
  decodePng,
  encodeBase64Png,
  encodePng,
  flattenAlpha,
  type Mask,
  maskFromImage,
  type RgbImage,
  resizeMask,
} from "./image.ts";
export { type Img2ImgOptions, img2img } from "./img2img.ts";
export { type InpaintOptions, inpaint } from "./inpaint.ts";
export {
  type Conditioning,
  type Denoiser,
  type DiffusionModel,
  type LoadOptions,
  loadDiffusionModel,
  verifyManifest,
} from "./model-folder.ts";
export { BatchNoise, type NoiseSource, PhiloxNormal, randomSeed, STREAM, seedsFor } from "./random.ts";
export {
  createScheduler,
  loadSchedulerConfig,
  SCHEDULER_NAMES,
  type Scheduler,
  type SchedulerName,
  schedulerNameForClass,
} from "./schedulers/index.ts";
export { encodePrompt, encodePromptPair, txt2img } from "./txt2img.ts";
