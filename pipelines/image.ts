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
