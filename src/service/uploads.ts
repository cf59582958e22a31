/**
 * Uploaded images (multipart files or base64 fields): PNG or JPEG, at most 4 MB, decoded to RGB plus
 * the alpha channel, and masks, whose transparent pixels mark the area to repaint (OpenAI's convention);
 * a mask without transparency is read by luma (white = repaint).
 */
import jpeg from "jpeg-js";
import { decodePng, type Mask, maskFromImage, type RgbImage } from "../../pipelines/image.ts";
import { AtelierError, invalid } from "../errors.ts";
import { MAX_UPLOAD_BYTES } from "./schemas.ts";

export interface Upload {
  image: RgbImage;
  /** null for formats without alpha (JPEG). */
  alpha: Uint8Array | null;
}

function tooLarge(field: string, bytes: number): AtelierError {
  return new AtelierError(`${field}: must be at most 4 MB (got ${(bytes / 1048576).toFixed(1)} MB)`, {
    status: 413,
    code: "upload_too_large",
    param: field,
  });
}

export function decodeUpload(bytes: Uint8Array, field: string): Upload {
  if (bytes.length > MAX_UPLOAD_BYTES) throw tooLarge(field, bytes.length);
  if (bytes.length === 0) throw invalid(field, "is empty");
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) {
    const { image, alpha } = decodePng(bytes, field);
    return { image, alpha };
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    let decoded: { width: number; height: number; data: Uint8Array };
    try {
      decoded = jpeg.decode(bytes, {
        useTArray: true,
        formatAsRGBA: false,
        maxResolutionInMP: 16,
        maxMemoryUsageInMB: 128,
      });
    } catch (error) {
      throw invalid(field, `not a readable JPEG (${(error as Error).message})`);
    }
    if (decoded.data.length !== decoded.width * decoded.height * 3)
      throw invalid(field, "not a readable JPEG (unexpected channel count)");
    return { image: decoded, alpha: null };
  }
  throw invalid(field, "must be a PNG or JPEG image");
}

/** A base64 field: plain base64 or a data URL of image/png or image/jpeg. */
export function decodeBase64Upload(text: string, field: string): Upload {
  const match = /^data:([^;,]*)(;base64)?,/.exec(text);
  if (match && (!/^image\/(png|jpeg)$/.test(match[1]!) || !match[2]))
    throw invalid(field, `must be a base64 PNG or JPEG data URL, got "${match[0]}"`);
  const payload = (match ? text.slice(match[0].length) : text).replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(payload)) throw invalid(field, "is not valid base64");
  return decodeUpload(Buffer.from(payload, "base64"), field);
}

export function hasTransparency(alpha: Uint8Array | null): boolean {
  return alpha?.some((a) => a < 255) ?? false;
}

function checkMaskSize(upload: Upload, image: RgbImage, field: string): void {
  if (upload.image.width !== image.width || upload.image.height !== image.height)
    throw invalid(
      field,
      `is ${upload.image.width}×${upload.image.height}; it must match the image, ${image.width}×${image.height}`,
    );
}

/** The repaint mask (255 = repaint) from an uploaded mask, which must be the image's size. */
export function maskFromUpload(upload: Upload, image: RgbImage, field = "mask"): Mask {
  checkMaskSize(upload, image, field);
  const fromAlpha = hasTransparency(upload.alpha);
  return maskFromImage(upload.image, upload.alpha ?? undefined, fromAlpha);
}

/** OpenAI's convention only: transparent pixels are repainted, opaque ones kept (an opaque mask edits nothing). */
export function alphaMask(upload: Upload, image: RgbImage, field = "mask"): Mask {
  checkMaskSize(upload, image, field);
  const alpha = upload.alpha ?? new Uint8Array(image.width * image.height).fill(255);
  return { width: image.width, height: image.height, data: alpha.map((a) => 255 - a) };
}

/** A mask stored as an image (gray: 255 = repaint) for the session history. */
export function maskToImage(mask: Mask): RgbImage {
  const data = new Uint8Array(mask.width * mask.height * 3);
  for (let i = 0; i < mask.data.length; i++) data.fill(mask.data[i]!, i * 3, i * 3 + 3);
  return { width: mask.width, height: mask.height, data };
}
