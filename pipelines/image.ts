/**
 * Image I/O shared by the whole project: 8-bit RGB images in row-major HWC order, PNG encode/decode.
 */
import { PNG } from "pngjs";
import { invalid } from "../src/errors.ts";

export interface RgbImage {
  width: number;
  height: number;
  /** width × height × 3 bytes, row-major, RGB. */
  data: Uint8Array;
}

export function createImage(width: number, height: number): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3) };
}

/** Encodes an RGB image as an 8-bit RGB PNG (deterministic bytes for the same pixels). */
export function encodePng(image: RgbImage): Buffer {
  const png = new PNG({ width: image.width, height: image.height, colorType: 2, inputColorType: 2 });
  png.data = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2 });
}

/** Decodes a PNG into RGB and its alpha channel (255 everywhere for PNGs without alpha). */
export function decodePng(bytes: Uint8Array, field = "image"): { image: RgbImage; alpha: Uint8Array } {
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (error) {
    throw invalid(field, `not a readable PNG (${(error as Error).message})`);
  }
  const { width, height } = png;
  const image = createImage(width, height);
  const alpha = new Uint8Array(width * height);
  for (let i = 0; i < width * height; i++) {
    image.data[i * 3] = png.data[i * 4]!;
    image.data[i * 3 + 1] = png.data[i * 4 + 1]!;
    image.data[i * 3 + 2] = png.data[i * 4 + 2]!;
    alpha[i] = png.data[i * 4 + 3]!;
  }
  return { image, alpha };
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47];

/** Decodes a PNG given as base64 or a `data:image/png;base64,…` URL (the API's image fields). */
export function decodeBase64Png(text: string, field = "image"): { image: RgbImage; alpha: Uint8Array } {
  if (typeof text !== "string" || text.length === 0) throw invalid(field, "must be a base64-encoded PNG");
  const match = /^data:([^;,]+)?(;base64)?,/.exec(text);
  if (match && (match[1] !== "image/png" || !match[2]))
    throw invalid(field, `only base64 PNG data URLs are supported, got "${match[0]}"`);
  const payload = match ? text.slice(match[0].length) : text;
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(payload.replace(/\s+/g, "")))
    throw invalid(field, "is not valid base64");
  const bytes = Buffer.from(payload, "base64");
  if (!PNG_MAGIC.every((b, i) => bytes[i] === b)) {
    const kind = bytes[0] === 0xff && bytes[1] === 0xd8 ? "a JPEG" : "not a PNG";
    throw invalid(field, `is ${kind}; only PNG images are supported`);
  }
  return decodePng(bytes, field);
}

/** PNG bytes as base64 (no data-URL prefix). */
export function encodeBase64Png(image: RgbImage): string {
  return encodePng(image).toString("base64");
}

/** Composites RGBA over a solid background (default white), e.g. for transparent inputs to img2img. */
export function flattenAlpha(
  image: RgbImage,
  alpha: Uint8Array,
  background: [number, number, number] = [255, 255, 255],
): RgbImage {
  const out = createImage(image.width, image.height);
  for (let i = 0; i < alpha.length; i++) {
    const a = alpha[i]! / 255;
    for (let c = 0; c < 3; c++)
      out.data[i * 3 + c] = Math.round(image.data[i * 3 + c]! * a + background[c]! * (1 - a));
  }
  return out;
}

/** A single-channel mask, width × height bytes; 255 = repaint, 0 = keep. */
export interface Mask {
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * A mask from an image: the luma of the RGB channels (white = repaint), or, for a PNG whose alpha
 * channel is used, `fromAlpha` makes transparent pixels the ones to repaint (the OpenAI-style edit mask).
 */
export function maskFromImage(image: RgbImage, alpha?: Uint8Array, fromAlpha = false): Mask {
  const n = image.width * image.height;
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (fromAlpha && alpha) data[i] = 255 - alpha[i]!;
    else {
      const r = image.data[i * 3]!;
      const g = image.data[i * 3 + 1]!;
      const b = image.data[i * 3 + 2]!;
      data[i] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
    }
  }
  return { width: image.width, height: image.height, data };
}

/**
 * Resamples a mask to width × height as coverage in [0, 1]: each output cell gets the area-weighted mean
 * of the input pixels it covers (exact box filter, so downsampling to the latent grid keeps partial
 * coverage); upsampling reads the covering pixel.
 */
export function resizeMask(mask: Mask, width: number, height: number): Float32Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw invalid("mask", `cannot resize to ${width}×${height}`);
  const out = new Float32Array(width * height);
  const sx = mask.width / width;
  const sy = mask.height / height;
  for (let y = 0; y < height; y++) {
    const y0 = y * sy;
    const y1 = y0 + sy;
    for (let x = 0; x < width; x++) {
      const x0 = x * sx;
      const x1 = x0 + sx;
      let sum = 0;
      let area = 0;
      for (let py = Math.floor(y0); py < Math.min(Math.ceil(y1), mask.height); py++) {
        const wy = Math.min(py + 1, y1) - Math.max(py, y0);
        for (let px = Math.floor(x0); px < Math.min(Math.ceil(x1), mask.width); px++) {
          const w = wy * (Math.min(px + 1, x1) - Math.max(px, x0));
          sum += w * mask.data[py * mask.width + px]!;
          area += w;
        }
      }
      out[y * width + x] = area > 0 ? sum / area / 255 : 0;
    }
  }
  return out;
}
