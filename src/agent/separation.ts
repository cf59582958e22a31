/**
 * Whether neighbouring objects touch. The shapes world keeps every object inside its own grid cell with a
 * gap to the next (evals/layout.ts), but the denoiser sometimes draws two neighbours into one blob: the
 * describer, which reads cell by cell, still sees two objects, while anyone looking at the picture sees one
 * shape. The critic asks for such pairs to be drawn apart (critic.ts `separation`).
 *
 * A pair of side-by-side occupied cells touches when some line across their shared border is foreground on
 * three pixels in a row (the one the border crosses and one either side): a bridge of paint. Foreground is a
 * pixel far from the background, estimated per row (or column) from the image's outer frame, so that a sky
 * gradient or a lighting tint is background too.
 */
import { GRID } from "../../evals/layout.ts";
import { POSITIONS, type Position } from "../../evals/scene.ts";
import type { RgbImage } from "../../pipelines/image.ts";

/** Largest channel difference from the background at which a pixel still counts as background. */
const BACKGROUND_TOLERANCE = 48;

/** Per-channel median of some pixels. */
function median(image: RgbImage, pixels: readonly number[]): [number, number, number] {
  const channel = (c: number) => {
    const values = pixels.map((p) => image.data[3 * p + c]!).sort((a, b) => a - b);
    return values[values.length >> 1]!;
  };
  return [channel(0), channel(1), channel(2)];
}

/** Rows either side whose frame pixels estimate a row's background (objects near the frame are outvoted). */
const FRAME_ROWS = 10;

/** Foreground mask: each pixel against the background of its row (the left and right frame around it). */
function foreground(image: RgbImage): Uint8Array {
  const { width, height, data } = image;
  const mask = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const frame: number[] = [];
    for (let v = Math.max(0, y - FRAME_ROWS); v <= Math.min(height - 1, y + FRAME_ROWS); v++)
      frame.push(v * width, v * width + 1, v * width + width - 2, v * width + width - 1);
    const row = y * width;
    const background = median(image, frame);
    for (let x = 0; x < width; x++) {
      const p = row + x;
      let far = 0;
      for (let c = 0; c < 3; c++) far = Math.max(far, Math.abs(data[3 * p + c]! - background[c]!));
      mask[p] = far > BACKGROUND_TOLERANCE ? 1 : 0;
    }
  }
  return mask;
}

/** Side-by-side pairs of occupied cells: how many there are, and those whose objects touch (grid order). */
export interface Separation {
  pairs: number;
  touching: [Position, Position][];
}

export function separation(image: RgbImage, occupied: readonly Position[]): Separation {
  const { width, height } = image;
  const fg = foreground(image);
  const at = (x: number, y: number) => fg[y * width + x] === 1;
  const filled = new Set(occupied.map((p) => POSITIONS.indexOf(p)));
  let pairs = 0;
  const touching: [Position, Position][] = [];
  for (let cell = 0; cell < POSITIONS.length; cell++) {
    const row = Math.floor(cell / GRID);
    const col = cell % GRID;
    if (!filled.has(cell)) continue;
    // The neighbour to the right: a bridge is a row crossing the vertical border.
    if (col < GRID - 1 && filled.has(cell + 1)) {
      pairs++;
      const border = Math.floor(((col + 1) * width) / GRID);
      const y0 = Math.floor((row * height) / GRID);
      const y1 = Math.ceil(((row + 1) * height) / GRID);
      for (let y = y0; y < y1; y++)
        if (at(border - 1, y) && at(border, y) && at(border + 1, y)) {
          touching.push([POSITIONS[cell]!, POSITIONS[cell + 1]!]);
          break;
        }
    }
    // The neighbour below: a bridge is a column crossing the horizontal border.
    if (row < GRID - 1 && filled.has(cell + GRID)) {
      pairs++;
      const border = Math.floor(((row + 1) * height) / GRID);
      const x0 = Math.floor((col * width) / GRID);
      const x1 = Math.ceil(((col + 1) * width) / GRID);
      for (let x = x0; x < x1; x++)
        if (at(x, border - 1) && at(x, border) && at(x, border + 1)) {
          touching.push([POSITIONS[cell]!, POSITIONS[cell + GRID]!]);
          break;
        }
    }
  }
  return { pairs, touching };
}
