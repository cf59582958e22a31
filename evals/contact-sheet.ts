/**
 * Contact sheets: many images tiled on one canvas, optionally with a pass/fail mark per tile (a small green
 * or red square in the tile's top-right corner, with a white border so it shows on any background).
 */
import { createImage, type RgbImage } from "../pipelines/image.ts";

export interface ContactSheetOptions {
  /** Tiles per row (default: ceil(sqrt(n))). */
  columns?: number;
  /** Integer upscaling of every tile, nearest neighbour (default 1). */
  scale?: number;
  /** Pixels between tiles and around the sheet (default 2). */
  gap?: number;
  /** Per tile: true = pass (green), false = fail (red), null/undefined = no mark. */
  marks?: readonly (boolean | null | undefined)[];
  /** Colour of the gaps (default dark gray). */
  gapColor?: readonly [number, number, number];
}

const PASS = [40, 200, 60] as const;
const FAIL = [230, 30, 30] as const;

function fillRect(
  sheet: RgbImage,
  x0: number,
  y0: number,
  w: number,
  h: number,
  color: readonly number[],
): void {
  for (let y = Math.max(0, y0); y < Math.min(sheet.height, y0 + h); y++) {
    for (let x = Math.max(0, x0); x < Math.min(sheet.width, x0 + w); x++) {
      const k = (y * sheet.width + x) * 3;
      sheet.data[k] = color[0]!;
      sheet.data[k + 1] = color[1]!;
      sheet.data[k + 2] = color[2]!;
    }
  }
}

/** Tiles images (which may differ in size; cells take the largest) into one RGB image. */
export function contactSheet(images: readonly RgbImage[], options: ContactSheetOptions = {}): RgbImage {
  const n = images.length;
  const columns = Math.max(1, options.columns ?? Math.ceil(Math.sqrt(Math.max(1, n))));
  const rows = Math.max(1, Math.ceil(n / columns));
  const scale = Math.max(1, Math.floor(options.scale ?? 1));
  const gap = options.gap ?? 2;
  const tileW = Math.max(1, ...images.map((image) => image.width)) * scale;
  const tileH = Math.max(1, ...images.map((image) => image.height)) * scale;
  const sheet = createImage(columns * (tileW + gap) + gap, rows * (tileH + gap) + gap);
  fillRect(sheet, 0, 0, sheet.width, sheet.height, options.gapColor ?? [48, 48, 48]);
  const markSize = Math.max(4, Math.round(tileW / 10));
  images.forEach((image, index) => {
    const left = gap + (index % columns) * (tileW + gap);
    const top = gap + Math.floor(index / columns) * (tileH + gap);
    for (let y = 0; y < image.height * scale; y++) {
      const src = Math.floor(y / scale) * image.width;
      const dst = (top + y) * sheet.width + left;
      for (let x = 0; x < image.width * scale; x++) {
        const s = (src + Math.floor(x / scale)) * 3;
        const d = (dst + x) * 3;
        sheet.data[d] = image.data[s]!;
        sheet.data[d + 1] = image.data[s + 1]!;
        sheet.data[d + 2] = image.data[s + 2]!;
      }
    }
    const mark = options.marks?.[index];
    if (mark === true || mark === false) {
      const x0 = left + tileW - markSize - 1;
      fillRect(sheet, x0 - 1, top, markSize + 2, markSize + 2, [255, 255, 255]);
      fillRect(sheet, x0, top + 1, markSize, markSize, mark ? PASS : FAIL);
    }
  });
  return sheet;
}
