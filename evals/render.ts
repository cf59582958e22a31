/**
 * The shapes world's rasteriser: scene (+ layout) → 64×64 RGB, pure and deterministic.
 *
 * Shapes are exact signed-distance functions of a unit shape (bounding box [-1,1]², y down), scaled by the
 * instance radius; anti-aliasing takes a pixel's coverage as clamp(0.5 − d) for the distance d (px) of its
 * centre, which is exact for straight edges. Coverage masks depend only on (shape, radius, style, sub-pixel
 * phase), so they are computed once and cached: rendering is then a few blends per pixel.
 *
 * Watercolor adds only low-frequency structure (periods ≥ 16 px, amplitude ≤ 6 %) so that an 8×8-latent VAE
 * can reconstruct it; there is deliberately no per-pixel noise.
 */
import { createImage, type RgbImage } from "../pipelines/image.ts";
import { type Instance, type Layout, layoutScene, SUBPIXEL } from "./layout.ts";
import { createRng, deriveSeed, type Rng } from "./rng.ts";
import {
  BACKGROUND_RGB,
  type Background,
  type Lighting,
  PALETTE,
  type Scene,
  type Shape,
  type Style,
} from "./scene.ts";

export const WIDTH = 64;
export const HEIGHT = 64;

/** Per-channel multipliers applied to the whole image, background included. */
export const LIGHTING_RGB: Record<Lighting, readonly [number, number, number]> = {
  daylight: [1, 1, 1],
  dim: [0.6, 0.6, 0.6],
  warm: [1.08, 0.96, 0.78],
};

/** Outline stroke width in px, drawn inside the shape's edge. */
export const STROKE_WIDTH = 1.6;
/** Width in px of a watercolor edge's ramp (centred on the geometric edge). */
const WATERCOLOR_EDGE = 2.5;
/** Amplitudes (relative) of the paper texture and of the pigment variation. */
const PAPER_AMPLITUDE = 0.035;
const PIGMENT_AMPLITUDE = 0.04;
const PIGMENT_PER_OBJECT = 0.02;

type Point = readonly [number, number];

/** Unit polygons: bounding box [-1,1]² (the star's is [-1,1]×[-0.951,0.951]), y down, apex up. */
const POLYGONS: Record<Exclude<Shape, "circle">, Point[]> = {
  square: [
    [-1, -1],
    [1, -1],
    [1, 1],
    [-1, 1],
  ],
  triangle: [
    [0, -1],
    [1, 1],
    [-1, 1],
  ],
  diamond: [
    [0, -1],
    [1, 0],
    [0, 1],
    [-1, 0],
  ],
  cross: [
    [-1 / 3, -1],
    [1 / 3, -1],
    [1 / 3, -1 / 3],
    [1, -1 / 3],
    [1, 1 / 3],
    [1 / 3, 1 / 3],
    [1 / 3, 1],
    [-1 / 3, 1],
    [-1 / 3, 1 / 3],
    [-1, 1 / 3],
    [-1, -1 / 3],
    [-1 / 3, -1 / 3],
  ],
  star: starPolygon(),
};

/** Five-point star, inner radius 0.45 × outer, scaled to width 2 and centred on its bounding box. */
function starPolygon(): Point[] {
  const outer = 1 / Math.sin((72 * Math.PI) / 180);
  const inner = 0.45 * outer;
  const offsetY = (outer - outer * Math.cos((36 * Math.PI) / 180)) / 2;
  const points: Point[] = [];
  for (let k = 0; k < 10; k++) {
    const angle = -Math.PI / 2 + (k * Math.PI) / 5;
    const r = k % 2 === 0 ? outer : inner;
    points.push([r * Math.cos(angle), r * Math.sin(angle) + offsetY]);
  }
  return points;
}

/** Exact signed distance to a polygon (negative inside); after Inigo Quilez's sdPolygon. */
function polygonDistance(px: number, py: number, v: Point[]): number {
  let best = (px - v[0]![0]) ** 2 + (py - v[0]![1]) ** 2;
  let sign = 1;
  for (let i = 0, j = v.length - 1; i < v.length; j = i, i++) {
    const [xi, yi] = v[i]!;
    const [xj, yj] = v[j]!;
    const ex = xj - xi;
    const ey = yj - yi;
    const wx = px - xi;
    const wy = py - yi;
    const t = Math.min(1, Math.max(0, (wx * ex + wy * ey) / (ex * ex + ey * ey)));
    const bx = wx - ex * t;
    const by = wy - ey * t;
    best = Math.min(best, bx * bx + by * by);
    const c1 = py >= yi;
    const c2 = py < yj;
    const c3 = ex * wy > ey * wx;
    if ((c1 && c2 && c3) || (!c1 && !c2 && !c3)) sign = -sign;
  }
  return sign * Math.sqrt(best);
}

/** Signed distance of a unit shape at (x, y) in its own coordinates. */
export function shapeDistance(shape: Shape, x: number, y: number): number {
  return shape === "circle" ? Math.hypot(x, y) - 1 : polygonDistance(x, y, POLYGONS[shape]);
}

const clamp01 = (x: number) => Math.min(1, Math.max(0, x));

/** Opacity of a pixel whose centre lies at signed distance d (px) from the edge. */
function alphaAt(style: Style, d: number, radius: number): number {
  switch (style) {
    case "flat":
      return clamp01(0.5 - d);
    case "outline":
      return clamp01(0.5 - d) - clamp01(0.5 - d - STROKE_WIDTH);
    case "watercolor": {
      const coverage = clamp01(0.5 - d / WATERCOLOR_EDGE);
      // Pigment thins toward the edge: 0.72 at the rim, 0.92 from 40 % of the radius inwards.
      const depth = clamp01(-d / (0.4 * radius));
      return coverage * (0.72 + 0.2 * depth * depth * (3 - 2 * depth));
    }
  }
}

interface Mask {
  /** Window side, in pixels; the window starts at (floor(cx) − half, floor(cy) − half). */
  size: number;
  half: number;
  alpha: Float32Array;
}

const maskCache = new Map<string, Mask>();
/** Layouts from the sampler need at most 6 × 3 × 3 × 64 masks; arbitrary radii from callers must not grow it forever. */
const MAX_CACHED_MASKS = 16_384;

function maskFor(shape: Shape, radius: number, style: Style, phaseX: number, phaseY: number): Mask {
  const key = `${shape}|${radius}|${style}|${phaseX}|${phaseY}`;
  const cached = maskCache.get(key);
  if (cached) return cached;
  const half = Math.ceil(radius + WATERCOLOR_EDGE);
  const size = 2 * half + 1;
  const alpha = new Float32Array(size * size);
  const fx = phaseX / SUBPIXEL;
  const fy = phaseY / SUBPIXEL;
  for (let j = 0; j < size; j++) {
    const y = (j - half + 0.5 - fy) / radius;
    for (let i = 0; i < size; i++) {
      const x = (i - half + 0.5 - fx) / radius;
      alpha[j * size + i] = alphaAt(style, radius * shapeDistance(shape, x, y), radius);
    }
  }
  const mask = { size, half, alpha };
  if (maskCache.size >= MAX_CACHED_MASKS) maskCache.clear();
  maskCache.set(key, mask);
  return mask;
}

/**
 * A smooth random field in [−amplitude, amplitude]: three plane waves with at most 4 cycles across the
 * canvas (periods ≥ 16 px), evaluated separably from 1-D tables.
 */
function lowFrequencyField(rng: Rng, amplitude: number): Float32Array {
  const field = new Float32Array(WIDTH * HEIGHT);
  const weights = [rng.next() + 0.5, rng.next() + 0.5, rng.next() + 0.5];
  const total = weights[0]! + weights[1]! + weights[2]!;
  const sx = new Float32Array(WIDTH);
  const cx = new Float32Array(WIDTH);
  const sy = new Float32Array(HEIGHT);
  const cy = new Float32Array(HEIGHT);
  for (const weight of weights) {
    let kx = 0;
    let ky = 0;
    while ((kx === 0 && ky === 0) || kx * kx + ky * ky > 16) {
      kx = rng.int(9) - 4;
      ky = rng.int(9) - 4;
    }
    const phase = rng.next() * 2 * Math.PI;
    const a = (amplitude * weight) / total;
    for (let x = 0; x < WIDTH; x++) {
      const angle = (2 * Math.PI * kx * (x + 0.5)) / WIDTH + phase;
      sx[x] = a * Math.sin(angle);
      cx[x] = a * Math.cos(angle);
    }
    for (let y = 0; y < HEIGHT; y++) {
      const angle = (2 * Math.PI * ky * (y + 0.5)) / HEIGHT;
      sy[y] = Math.sin(angle);
      cy[y] = Math.cos(angle);
    }
    for (let y = 0; y < HEIGHT; y++) {
      const row = y * WIDTH;
      const s = sy[y]!;
      const c = cy[y]!;
      for (let x = 0; x < WIDTH; x++) field[row + x]! += sx[x]! * c + cx[x]! * s;
    }
  }
  return field;
}

function fillBackground(buffer: Float32Array, background: Background, paper: Float32Array | null): void {
  const { top, bottom } = BACKGROUND_RGB[background];
  for (let y = 0; y < HEIGHT; y++) {
    const t = (y + 0.5) / HEIGHT;
    const r = top[0]! + (bottom[0]! - top[0]!) * t;
    const g = top[1]! + (bottom[1]! - top[1]!) * t;
    const b = top[2]! + (bottom[2]! - top[2]!) * t;
    for (let x = 0; x < WIDTH; x++) {
      const p = y * WIDTH + x;
      const f = paper ? 1 + paper[p]! : 1;
      buffer[p * 3] = r * f;
      buffer[p * 3 + 1] = g * f;
      buffer[p * 3 + 2] = b * f;
    }
  }
}

function drawInstance(
  buffer: Float32Array,
  instance: Instance,
  style: Style,
  pigment: Float32Array | null,
  tint: number,
): void {
  const baseX = Math.floor(instance.cx);
  const baseY = Math.floor(instance.cy);
  const phaseX = Math.min(SUBPIXEL - 1, Math.round((instance.cx - baseX) * SUBPIXEL));
  const phaseY = Math.min(SUBPIXEL - 1, Math.round((instance.cy - baseY) * SUBPIXEL));
  const mask = maskFor(instance.shape, instance.radius, style, phaseX, phaseY);
  const [r, g, b] = PALETTE[instance.color];
  const x0 = baseX - mask.half;
  const y0 = baseY - mask.half;
  const i0 = Math.max(0, -x0);
  const i1 = Math.min(mask.size, WIDTH - x0);
  const j0 = Math.max(0, -y0);
  const j1 = Math.min(mask.size, HEIGHT - y0);
  for (let j = j0; j < j1; j++) {
    const row = (y0 + j) * WIDTH + x0;
    const maskRow = j * mask.size;
    for (let i = i0; i < i1; i++) {
      const a = mask.alpha[maskRow + i]!;
      if (a <= 0) continue;
      const p = row + i;
      const f = pigment ? tint * (1 + pigment[p]!) : 1;
      const k = p * 3;
      buffer[k] = buffer[k]! + (r * f - buffer[k]!) * a;
      buffer[k + 1] = buffer[k + 1]! + (g * f - buffer[k + 1]!) * a;
      buffer[k + 2] = buffer[k + 2]! + (b * f - buffer[k + 2]!) * a;
    }
  }
}

/**
 * Renders a scene to a 64×64 RGB image. Deterministic in (scene, layout, seed): the seed drives the layout
 * (when none is given) and the watercolor texture.
 */
export function renderScene(scene: Scene, layout?: Layout, seed = 0): RgbImage {
  const placed = layout ?? layoutScene(scene, seed);
  const watercolor = scene.style === "watercolor";
  const rng = createRng(deriveSeed(seed, 0x7e47));
  const paper = watercolor ? lowFrequencyField(rng, PAPER_AMPLITUDE) : null;
  const pigment = watercolor ? lowFrequencyField(rng, PIGMENT_AMPLITUDE) : null;
  const buffer = new Float32Array(WIDTH * HEIGHT * 3);
  fillBackground(buffer, scene.background, paper);
  for (const instance of placed.instances) {
    const tint = watercolor ? 1 + (rng.next() * 2 - 1) * PIGMENT_PER_OBJECT : 1;
    drawInstance(buffer, instance, scene.style, pigment, tint);
  }
  const [lr, lg, lb] = LIGHTING_RGB[scene.lighting];
  const image = createImage(WIDTH, HEIGHT);
  const out = image.data;
  for (let p = 0; p < WIDTH * HEIGHT * 3; p += 3) {
    out[p] = Math.min(255, Math.round(buffer[p]! * lr));
    out[p + 1] = Math.min(255, Math.round(buffer[p + 1]! * lg));
    out[p + 2] = Math.min(255, Math.round(buffer[p + 2]! * lb));
  }
  return image;
}
