/**
 * Compositing for the agent's edits and repairs, on images whose background is a smooth plate (a flat
 * colour or a vertical gradient, as every background of the shapes world): a new background under the
 * session image's objects (replaceBackground), the session image under a new light (relight, by the gain
 * lightingGain reads), and cells of an image replaced by what a rendering draws there (transplant).
 *
 * The plate is fitted to the border pixels, per channel a straight line in the row, with the pixels
 * that objects cover dropped as outliers. A pixel is foreground core when it stands far from the plate;
 * around a core, a pixel's coverage is its offset from the plate projected on the offset of the most
 * contrasting core pixel nearby (the object's colour there), the linear mixing model of alpha matting
 * with a known background (Smith & Blinn 1996, "Blue Screen Matting"). Everything else is background.
 */
import { createImage, type Mask, type RgbImage } from "../../pipelines/image.ts";

/** Border band the plate is fitted to, in px. */
const BORDER = 2;
/** Smallest residual (sum over RGB) at which a border pixel is dropped from the plate's fit. */
const MIN_OUTLIER = 12;
/** Offset from the plate (RGB Euclidean) above which a pixel is an object's core. */
const CORE_OFFSET = 40;
/** How far around a core pixel coverage is measured, and where the object's colour is looked for. */
const REACH = 2;

/** Least-squares line v = a + b·y through the points (ys, vs) that `use` keeps. */
function fitLine(ys: readonly number[], vs: readonly number[], use: readonly boolean[]): [number, number] {
  let n = 0;
  let sy = 0;
  let sv = 0;
  let syy = 0;
  let syv = 0;
  ys.forEach((y, i) => {
    if (!use[i]) return;
    n++;
    sy += y;
    sv += vs[i]!;
    syy += y * y;
    syv += y * vs[i]!;
  });
  const det = n * syy - sy * sy;
  if (n === 0) return [0, 0];
  if (det === 0) return [sv / n, 0];
  const b = (n * syv - sy * sv) / det;
  return [(sv - b * sy) / n, b];
}

/** The background colour of every row (height × 3), fitted to the border pixels. */
function backgroundPlate(image: RgbImage): Float32Array {
  const { width, height, data } = image;
  const ys: number[] = [];
  const pixels: number[] = [];
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      if (x < BORDER || y < BORDER || x >= width - BORDER || y >= height - BORDER) {
        ys.push(y);
        pixels.push(y * width + x);
      }
  const fitPlate = (use: readonly boolean[]) =>
    [0, 1, 2].map((c) =>
      fitLine(
        ys,
        pixels.map((p) => data[p * 3 + c]!),
        use,
      ),
    );
  // Fit, drop the pixels far from the fit (objects on the border), fit again.
  const first = fitPlate(pixels.map(() => true));
  const residuals = pixels.map((p, i) =>
    [0, 1, 2].reduce((s, c) => s + Math.abs(data[p * 3 + c]! - (first[c]![0] + first[c]![1] * ys[i]!)), 0),
  );
  const sorted = [...residuals].sort((a, b) => a - b);
  const limit = Math.max(MIN_OUTLIER, 3 * sorted[Math.floor(sorted.length / 2)]!);
  const lines = fitPlate(residuals.map((r) => r <= limit));
  const plate = new Float32Array(height * 3);
  for (let y = 0; y < height; y++)
    for (let c = 0; c < 3; c++) plate[y * 3 + c] = lines[c]![0] + lines[c]![1] * y;
  return plate;
}

/** Per pixel, its coverage by foreground in [0, 1], against the image's background plate. */
export function foregroundCoverage(image: RgbImage, plate = backgroundPlate(image)): Float32Array {
  const { width, height, data } = image;
  const offset = new Float32Array(width * height * 3);
  const contrast = new Float32Array(width * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      let sum = 0;
      for (let c = 0; c < 3; c++) {
        const d = data[p * 3 + c]! - plate[y * 3 + c]!;
        offset[p * 3 + c] = d;
        sum += d * d;
      }
      contrast[p] = Math.sqrt(sum);
    }
  const coverage = new Float32Array(width * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      // The object's colour here: the most contrasting core pixel within reach.
      let core = -1;
      for (let dy = -REACH; dy <= REACH; dy++)
        for (let dx = -REACH; dx <= REACH; dx++) {
          const qx = x + dx;
          const qy = y + dy;
          if (qx < 0 || qy < 0 || qx >= width || qy >= height) continue;
          const q = qy * width + qx;
          if (contrast[q]! > CORE_OFFSET && (core < 0 || contrast[q]! > contrast[core]!)) core = q;
        }
      if (core < 0) continue;
      let dot = 0;
      for (let c = 0; c < 3; c++) dot += offset[p * 3 + c]! * offset[core * 3 + c]!;
      coverage[p] = Math.min(1, Math.max(0, dot / (contrast[core]! * contrast[core]!)));
    }
  return coverage;
}

/** Offset from the plate above which a pixel of the generated image is taken for part of an object. */
const GENERATED_OFFSET = 20;

/**
 * The generated image's background: its own pixels, except around what stands off its plate (objects it
 * drew, with their soft edges), where the plate is taken.
 */
function backgroundOf(generated: RgbImage): Float32Array {
  const { width, height, data } = generated;
  const plate = backgroundPlate(generated);
  const off = new Uint8Array(width * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      let sum = 0;
      for (let c = 0; c < 3; c++) sum += (data[p * 3 + c]! - plate[y * 3 + c]!) ** 2;
      if (sum > GENERATED_OFFSET * GENERATED_OFFSET) off[p] = 1;
    }
  const out = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      let near = false;
      for (let dy = -REACH; dy <= REACH && !near; dy++)
        for (let dx = -REACH; dx <= REACH && !near; dx++) {
          const qx = x + dx;
          const qy = y + dy;
          near = qx >= 0 && qy >= 0 && qx < width && qy < height && off[qy * width + qx] === 1;
        }
      const p = y * width + x;
      for (let c = 0; c < 3; c++) out[p * 3 + c] = near ? plate[y * 3 + c]! : data[p * 3 + c]!;
    }
  return out;
}

/**
 * The session image's objects over the generated image's background (backgroundOf). Along the objects'
 * edges the session's background is unmixed out (out = session + (1 − coverage)·(new − old background)),
 * so an edge pixel blends the object with the new background as the original blended it with the old.
 */
export function replaceBackground(session: RgbImage, generated: RgbImage): RgbImage {
  const { width, height } = session;
  const oldPlate = backgroundPlate(session);
  const coverage = foregroundCoverage(session, oldPlate);
  const background = backgroundOf(generated);
  const out = createImage(width, height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      const c = coverage[p]!;
      for (let ch = 0; ch < 3; ch++) {
        const k = p * 3 + ch;
        const value =
          c === 0 ? background[k]! : session.data[k]! + (1 - c) * (background[k]! - oldPlate[y * 3 + ch]!);
        out.data[k] = Math.min(255, Math.max(0, Math.round(value)));
      }
    }
  return out;
}

/** Mean plate level (0–255) below which a channel's gain is not read: a dark plate leaves it too uncertain. */
const MIN_PLATE_LEVEL = 40;

/**
 * The per-channel gain that turns the session image's lighting into the generated image's, read from
 * their background plates (a light colours the whole scene alike), or null when a plate is too dark.
 */
export function lightingGain(session: RgbImage, generated: RgbImage): [number, number, number] | null {
  const mean = (plate: Float32Array, c: number) => {
    let sum = 0;
    for (let y = 0; y < plate.length / 3; y++) sum += plate[y * 3 + c]!;
    return sum / (plate.length / 3);
  };
  const before = backgroundPlate(session);
  const after = backgroundPlate(generated);
  const gain: number[] = [];
  for (let c = 0; c < 3; c++) {
    const from = mean(before, c);
    const to = mean(after, c);
    if (from < MIN_PLATE_LEVEL || to < MIN_PLATE_LEVEL) return null;
    gain.push(to / from);
  }
  return gain as [number, number, number];
}

/** The image under another light: every channel scaled by its gain. */
export function relight(image: RgbImage, gain: readonly [number, number, number]): RgbImage {
  const out = createImage(image.width, image.height);
  for (let k = 0; k < image.data.length; k++)
    out.data[k] = Math.min(255, Math.round(image.data[k]! * gain[k % 3]!));
  return out;
}

/**
 * The image with a region's content replaced by what the generated image draws there: the region is cleared
 * to the image's background plate and the generated image's objects are laid over it, unmixed from the
 * generated plate onto the image's (as replaceBackground does). Every other pixel is the image's own.
 */
export function transplant(image: RgbImage, generated: RgbImage, region: Mask): RgbImage {
  const { width, height } = image;
  const plate = backgroundPlate(image);
  const generatedPlate = backgroundPlate(generated);
  const coverage = foregroundCoverage(generated, generatedPlate);
  const out = createImage(width, height);
  out.data.set(image.data);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      if (region.data[p] === 0) continue;
      const g = coverage[p]!;
      for (let c = 0; c < 3; c++) {
        const k = p * 3 + c;
        const background = plate[y * 3 + c]!;
        const value =
          g === 0 ? background : generated.data[k]! + (1 - g) * (background - generatedPlate[y * 3 + c]!);
        out.data[k] = Math.min(255, Math.max(0, Math.round(value)));
      }
    }
  return out;
}
