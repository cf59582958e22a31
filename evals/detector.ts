/**
 * The oracle detector: recovers a shapes-world scene description from an image, analytically (known
 * background and lighting colours, the palette, connected components, hand-chosen shape features compared
 * with the same features of template shapes drawn by the world's renderer; nothing is learned), so it
 * can judge images from any generator.
 *
 * Pipeline: (1) background + lighting from the border pixels (sky is a vertical gradient), (2) undo the
 * lighting, (3) object pixels = far from the local background colour, 8-connected components (split where
 * soft rims bridge two objects), (4) colour of a component = the palette colour that best explains its most
 * saturated pixels as pigment laid over the background, (5) per-pixel coverage α relative to that colour,
 * holes filled (outline style), then features: fill ratio, row-width and column-height profiles, hollowness,
 * edge softness, pigment opacity; size from the extent, (6) the scene's style is the one whose templates
 * explain all objects best together, (7) each shape is its nearest template of that style and size.
 *
 * It is exact on the world's renderings (see `atelier eval --detector-report`) and robust to pixel noise;
 * strong blur makes flat shapes look like watercolor and small stars or crosses like diamonds.
 */
import type { RgbImage } from "../pipelines/image.ts";
import { SIZE_RADIUS } from "./layout.ts";
import { LIGHTING_RGB, renderScene } from "./render.ts";
import {
  BACKGROUND_RGB,
  BACKGROUNDS,
  type Background,
  COLORS,
  type Color,
  LIGHTINGS,
  type Lighting,
  PALETTE,
  type Scene,
  SHAPES,
  type Shape,
  SIZES,
  type Size,
  STYLES,
  type Style,
} from "./scene.ts";

export interface DetectedObject {
  shape: Shape;
  color: Color;
  size: Size;
  /** Centre of the object's bounding box, in pixels (x right, y down), as the layout places instances. */
  cx: number;
  cy: number;
  /** [x0, y0, x1, y1]: inclusive pixel bounds. */
  bbox: [number, number, number, number];
}

export interface Detection {
  objects: DetectedObject[];
  background: Background;
  style: Style;
  lighting: Lighting;
}

/** Unlit colour distance from the background above which a pixel belongs to an object. */
const OBJECT_THRESHOLD = 28;
/** Components smaller than this (pixels) are texture or stray anti-aliasing, not objects. */
const MIN_PIXELS = 6;
/**
 * Coverage level taken as the shape's edge. Flat edges cross it 0.1 px outside the true edge, watercolor's
 * soft rim (translucent pigment fading over 2.5 px) near the true edge, so sizes read alike in both styles.
 */
const EDGE_LEVEL = 0.4;
/** Row-profile sample heights (share of the object's height from its top). */
const PROFILE_AT = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

type Rgb = [number, number, number];

const rowCache = new Map<string, Rgb[]>();

/** The unlit background colour of every row (sky is a vertical gradient sampled at pixel centres). */
function backgroundRows(background: Background, height: number): Rgb[] {
  const key = `${background}|${height}`;
  const cached = rowCache.get(key);
  if (cached) return cached;
  const { top, bottom } = BACKGROUND_RGB[background];
  const rows = Array.from({ length: height }, (_, y) => {
    const t = (y + 0.5) / height;
    return [0, 1, 2].map((c) => top[c]! + (bottom[c]! - top[c]!) * t) as Rgb;
  });
  rowCache.set(key, rows);
  return rows;
}

function median(values: Float64Array): number {
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Picks the background × lighting whose predicted colours best fit the border pixels (median L1 error). */
function estimateBackground(image: RgbImage): { background: Background; lighting: Lighting } {
  const { width, height, data } = image;
  const border: number[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (x < 2 || y < 2 || x >= width - 2 || y >= height - 2) border.push(y * width + x);
    }
  }
  let best = { background: BACKGROUNDS[0] as Background, lighting: LIGHTINGS[0] as Lighting };
  let bestCost = Number.POSITIVE_INFINITY;
  const errors = new Float64Array(border.length);
  for (const background of BACKGROUNDS) {
    const rows = backgroundRows(background, height);
    for (const lighting of LIGHTINGS) {
      const gain = LIGHTING_RGB[lighting];
      border.forEach((p, k) => {
        const row = rows[Math.floor(p / width)]!;
        let error = 0;
        for (let c = 0; c < 3; c++) error += Math.abs(data[p * 3 + c]! - Math.min(255, row[c]! * gain[c]!));
        errors[k] = error;
      });
      const cost = median(errors);
      if (cost < bestCost) {
        bestCost = cost;
        best = { background, lighting };
      }
    }
  }
  return best;
}

/** Features of one object (exposed for the detector report and tests). */
export interface ObjectFeatures {
  /** Filled area (holes included) in px², measured at EDGE_LEVEL. */
  area: number;
  /** Extent of the filled coverage, in px. */
  width: number;
  height: number;
  /** area / (width × height). */
  fill: number;
  /** Row widths at PROFILE_AT heights, relative to the width. */
  profile: number[];
  /** Column heights at PROFILE_AT widths, relative to the height. */
  columns: number[];
  /** 1 − mean coverage of the pixels enclosed by the outer edge: ≈0 for solid shapes, large for rings. */
  hollow: number;
  /** Pixels of partial coverage (0.1–0.9 of pure pigment) per pixel of outline: ~1 for hard edges. */
  softness: number;
  /** Opacity of the most saturated pixels relative to pure pigment (~1 flat, ~0.9 watercolor). */
  coreAlpha: number;
}

function components(mask: Uint8Array, width: number, height: number): number[][] {
  const label = new Int32Array(width * height).fill(-1);
  const found: number[][] = [];
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || label[start]! >= 0) continue;
    const pixels: number[] = [];
    label[start] = found.length;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop()!;
      pixels.push(p);
      const x = p % width;
      const y = (p - x) / width;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          const ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
          const q = ny * width + nx;
          if (mask[q] && label[q]! < 0) {
            label[q] = found.length;
            stack.push(q);
          }
        }
      }
    }
    found.push(pixels);
  }
  return found;
}

/**
 * The palette colour that best explains `core` as pigment of opacity a ∈ [0.6, 1.1] over `bg` (watercolor
 * lets some background through; pigment texture brightens a little), with that opacity.
 */
function classifyColor(core: Rgb, bg: Rgb): { color: Color; alpha: number } {
  let best: { color: Color; alpha: number } = { color: COLORS[0]!, alpha: 1 };
  let bestError = Number.POSITIVE_INFINITY;
  for (const color of COLORS) {
    const c = PALETTE[color];
    let dot = 0;
    let norm = 0;
    for (let k = 0; k < 3; k++) {
      dot += (core[k]! - bg[k]!) * (c[k]! - bg[k]!);
      norm += (c[k]! - bg[k]!) ** 2;
    }
    const alpha = Math.min(1.1, Math.max(0.6, dot / Math.max(norm, 1e-6)));
    let error = 0;
    for (let k = 0; k < 3; k++) error += (core[k]! - bg[k]! - alpha * (c[k]! - bg[k]!)) ** 2;
    if (error < bestError) {
      bestError = error;
      best = { color, alpha };
    }
  }
  return best;
}

/**
 * Length of the part of a sampled line (values at pixel centres) where the linearly interpolated value is
 * at least `level`, with the first and last crossing positions (in pixel coordinates).
 */
function levelSet(values: ArrayLike<number>, level: number): { length: number; first: number; last: number } {
  let length = 0;
  let first = Number.NaN;
  let last = Number.NaN;
  for (let i = 0; i + 1 < values.length; i++) {
    const a = values[i]!;
    const b = values[i + 1]!;
    if (a < level && b < level) continue;
    let from = 0;
    let to = 1;
    if (a < level) from = (level - a) / (b - a);
    if (b < level) to = (a - level) / (a - b);
    length += to - from;
    if (Number.isNaN(first)) first = i + 0.5 + from;
    last = i + 0.5 + to;
  }
  return { length, first, last };
}

function sampleAt(values: Float64Array, y: number): number {
  const y0 = Math.max(0, Math.min(values.length - 1, Math.floor(y)));
  const y1 = Math.min(values.length - 1, y0 + 1);
  const t = Math.max(0, Math.min(1, y - y0));
  return values[y0]! * (1 - t) + values[y1]! * t;
}

interface Measured {
  features: ObjectFeatures;
  color: Color;
  cx: number;
  cy: number;
  bbox: [number, number, number, number];
}

/** Coverage, hole filling and features of component `id` (`unlit` is the lighting-corrected image). */
function measure(
  pixels: number[],
  unlit: Float32Array,
  distance: Float32Array,
  owner: Int32Array,
  id: number,
  background: Background,
  width: number,
  height: number,
): Measured {
  const rows = backgroundRows(background, height);
  const bgOf = (p: number) => rows[Math.floor(p / width)]!;
  // The most saturated third of the pixels (at least 3) stands for the pigment colour.
  const byDistance = pixels.slice().sort((a, b) => distance[b]! - distance[a]!);
  const coreCount = Math.min(byDistance.length, Math.max(3, Math.ceil(byDistance.length / 3)));
  const core: Rgb = [0, 0, 0];
  const coreBg: Rgb = [0, 0, 0];
  for (const p of byDistance.slice(0, coreCount)) {
    const bg = bgOf(p);
    for (let k = 0; k < 3; k++) {
      core[k] += unlit[p * 3 + k]! / coreCount;
      coreBg[k] += bg[k]! / coreCount;
    }
  }
  const { color, alpha: coreAlpha } = classifyColor(core, coreBg);
  const pigment = PALETTE[color];

  // A window around the component with a 2 px margin for the soft edges.
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (const p of pixels) {
    const x = p % width;
    const y = (p - x) / width;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  const wx0 = x0 - 2;
  const wy0 = y0 - 2;
  const ww = x1 - x0 + 5;
  const wh = y1 - y0 + 5;
  // Absolute coverage (share of pure pigment) and coverage relative to this object's own opacity.
  const absolute = new Float64Array(ww * wh);
  const alpha = new Float64Array(ww * wh);
  for (let j = 0; j < wh; j++) {
    for (let i = 0; i < ww; i++) {
      const x = wx0 + i;
      const y = wy0 + j;
      if (x < 0 || y < 0 || x >= width || y >= height) continue;
      const p = y * width + x;
      if (owner[p] !== id && owner[p] !== -1) continue;
      const bg = bgOf(p);
      let dot = 0;
      let norm = 0;
      for (let k = 0; k < 3; k++) {
        dot += (unlit[p * 3 + k]! - bg[k]!) * (pigment[k]! - bg[k]!);
        norm += (pigment[k]! - bg[k]!) ** 2;
      }
      absolute[j * ww + i] = Math.max(0, Math.min(1, dot / norm));
      alpha[j * ww + i] = Math.max(0, Math.min(1, dot / norm / coreAlpha));
    }
  }
  // Holes: below the edge level and not reachable from the window border (4-connected).
  const outside = new Uint8Array(ww * wh);
  const stack: number[] = [];
  for (let q = 0; q < outside.length; q++) {
    const i = q % ww;
    const j = (q - i) / ww;
    if ((i === 0 || j === 0 || i === ww - 1 || j === wh - 1) && alpha[q]! < EDGE_LEVEL) {
      outside[q] = 1;
      stack.push(q);
    }
  }
  while (stack.length > 0) {
    const q = stack.pop()!;
    const i = q % ww;
    const j = (q - i) / ww;
    const neighbours = [
      i > 0 ? q - 1 : -1,
      i < ww - 1 ? q + 1 : -1,
      j > 0 ? q - ww : -1,
      j < wh - 1 ? q + ww : -1,
    ];
    for (const r of neighbours) {
      if (r >= 0 && !outside[r] && alpha[r]! < EDGE_LEVEL) {
        outside[r] = 1;
        stack.push(r);
      }
    }
  }
  // Filled coverage: the measured α on the outer edge (pixels touching the outside), 1 further in.
  const filled = new Float64Array(ww * wh);
  let inner = 0;
  let innerAlpha = 0;
  let partial = 0;
  let edge = 0;
  for (let q = 0; q < filled.length; q++) {
    if (outside[q]) {
      filled[q] = alpha[q]!;
      if (absolute[q]! >= 0.1) partial++;
      continue;
    }
    const touchesOutside = outside[q - 1] || outside[q + 1] || outside[q - ww] || outside[q + ww];
    if (touchesOutside) {
      filled[q] = alpha[q]!;
      edge++;
      if (absolute[q]! <= 0.9) partial++;
    } else {
      filled[q] = 1;
      inner++;
      innerAlpha += alpha[q]!;
    }
  }

  const rowWidth = new Float64Array(wh);
  const colHeight = new Float64Array(ww);
  const colMax = new Float64Array(ww);
  const rowMax = new Float64Array(wh);
  const column = new Float64Array(wh);
  for (let j = 0; j < wh; j++) {
    const row = filled.subarray(j * ww, (j + 1) * ww);
    rowWidth[j] = levelSet(row, EDGE_LEVEL).length;
    for (let i = 0; i < ww; i++) {
      colMax[i] = Math.max(colMax[i]!, row[i]!);
      rowMax[j] = Math.max(rowMax[j]!, row[i]!);
    }
  }
  for (let i = 0; i < ww; i++) {
    for (let j = 0; j < wh; j++) column[j] = filled[j * ww + i]!;
    colHeight[i] = levelSet(column, EDGE_LEVEL).length;
  }
  const xs = levelSet(colMax, EDGE_LEVEL);
  const ys = levelSet(rowMax, EDGE_LEVEL);
  const w = Math.max(1, xs.last - xs.first);
  const h = Math.max(1, ys.last - ys.first);
  let area = 0;
  for (const value of rowWidth) area += value;
  const features: ObjectFeatures = {
    area,
    width: w,
    height: h,
    fill: area / (w * h),
    profile: PROFILE_AT.map((t) => sampleAt(rowWidth, ys.first + t * h - 0.5) / w),
    columns: PROFILE_AT.map((t) => sampleAt(colHeight, xs.first + t * w - 0.5) / h),
    hollow: inner > 0 ? 1 - innerAlpha / inner : 0,
    softness: partial / Math.max(1, edge),
    coreAlpha,
  };
  const bbox: [number, number, number, number] = [
    wx0 + Math.floor(xs.first),
    wy0 + Math.floor(ys.first),
    wx0 + Math.ceil(xs.last) - 1,
    wy0 + Math.ceil(ys.last) - 1,
  ];
  return { features, color, cx: wx0 + (xs.first + xs.last) / 2, cy: wy0 + (ys.first + ys.last) / 2, bbox };
}

export function classifySize(f: ObjectFeatures): Size {
  const radius = Math.max(f.width, f.height) / 2;
  const small = (SIZE_RADIUS.small + SIZE_RADIUS.medium) / 2;
  const large = (SIZE_RADIUS.medium + SIZE_RADIUS.large) / 2;
  return radius < small ? "small" : radius < large ? "medium" : "large";
}

/** Squared, weighted distance between two feature sets (all terms are O(1) in size). */
function featureDistance(a: ObjectFeatures, b: ObjectFeatures): number {
  let d = 4 * (a.fill - b.fill) ** 2;
  for (let k = 0; k < PROFILE_AT.length; k++) {
    d += (a.profile[k]! - b.profile[k]!) ** 2 + (a.columns[k]! - b.columns[k]!) ** 2;
  }
  d += 4 * (a.hollow - b.hollow) ** 2;
  d += 0.5 * (Math.min(a.softness, 4) - Math.min(b.softness, 4)) ** 2;
  d += 4 * (a.coreAlpha - b.coreAlpha) ** 2;
  return d;
}

/** Sub-pixel offsets at which the templates are drawn (the world quantises centres to 1/8 px). */
const TEMPLATE_PHASES = [0, 0.25, 0.5, 0.75];

type Templates = Record<Style, Record<Size, Record<Shape, ObjectFeatures[]>>>;
let templates: Templates | null = null;

/**
 * Features of every (style, size, shape) drawn by the world's renderer at several sub-pixel phases: the
 * detector classifies by the nearest template, so it knows each shape as pixelated and anti-aliased.
 */
function shapeTemplates(): Templates {
  if (templates) return templates;
  const built = {} as Templates;
  for (const style of STYLES) {
    built[style] = {} as Record<Size, Record<Shape, ObjectFeatures[]>>;
    for (const size of SIZES) {
      built[style][size] = {} as Record<Shape, ObjectFeatures[]>;
      for (const shape of SHAPES) {
        const samples: ObjectFeatures[] = [];
        for (const dx of TEMPLATE_PHASES) {
          for (const dy of TEMPLATE_PHASES) {
            const scene: Scene = {
              objects: [{ shape, color: "blue", size, count: 1, placement: { kind: "free" } }],
              background: "white",
              style,
              lighting: "daylight",
            };
            const instance = { group: 0, shape, color: "blue" as const, size, cell: 4 };
            const layout = {
              instances: [{ ...instance, cx: 32 + dx, cy: 32 + dy, radius: SIZE_RADIUS[size] }],
            };
            const image = renderScene(scene, layout, samples.length);
            const measured = measureImage(image, { background: "white", lighting: "daylight" }).measured;
            if (measured.length === 1) samples.push(measured[0]!.features);
          }
        }
        built[style][size][shape] = samples;
      }
    }
  }
  templates = built;
  return built;
}

/** The nearest template's shape among one style and size, with its distance. */
function nearestShape(f: ObjectFeatures, style: Style, size: Size): { shape: Shape; distance: number } {
  let best: { shape: Shape; distance: number } = { shape: SHAPES[0], distance: Number.POSITIVE_INFINITY };
  const bySize = shapeTemplates()[style][size];
  for (const shape of SHAPES) {
    for (const template of bySize[shape]) {
      const distance = featureDistance(f, template);
      if (distance < best.distance) best = { shape, distance };
    }
  }
  return best;
}

/** The scene's style: the one whose templates explain all the objects best together. */
export function classifyStyle(features: readonly ObjectFeatures[]): Style {
  let best: Style = "flat";
  let bestTotal = Number.POSITIVE_INFINITY;
  for (const style of STYLES) {
    let total = 0;
    for (const f of features) total += nearestShape(f, style, classifySize(f)).distance;
    if (total < bestTotal) {
      bestTotal = total;
      best = style;
    }
  }
  return best;
}

export function classifyShape(f: ObjectFeatures, style: Style): Shape {
  return nearestShape(f, style, classifySize(f)).shape;
}

/** A detection plus every object's features (for the detector report and debugging). */
export interface DetailedDetection extends Detection {
  features: ObjectFeatures[];
}

/** Background, lighting and the measured components of an image. */
function measureImage(
  image: RgbImage,
  known?: { background: Background; lighting: Lighting },
): { background: Background; lighting: Lighting; measured: Measured[] } {
  const { width, height, data } = image;
  const { background, lighting } = known ?? estimateBackground(image);
  const [gr, gg, gb] = LIGHTING_RGB[lighting];
  const unlit = new Float32Array(width * height * 3);
  const distance = new Float32Array(width * height);
  const mask = new Uint8Array(width * height);
  const rows = backgroundRows(background, height);
  for (let y = 0; y < height; y++) {
    const [br, bg, bb] = rows[y]!;
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      const r = data[p * 3]! / gr;
      const g = data[p * 3 + 1]! / gg;
      const b = data[p * 3 + 2]! / gb;
      unlit[p * 3] = r;
      unlit[p * 3 + 1] = g;
      unlit[p * 3 + 2] = b;
      const d = Math.sqrt((r - br) ** 2 + (g - bg) ** 2 + (b - bb) ** 2);
      distance[p] = d;
      if (d > OBJECT_THRESHOLD) mask[p] = 1;
    }
  }
  const found = splitTouching(components(mask, width, height), distance, width, height).filter(
    (pixels) => pixels.length >= MIN_PIXELS,
  );
  const owner = new Int32Array(width * height).fill(-1);
  found.forEach((pixels, id) => {
    for (const p of pixels) owner[p] = id;
  });
  const measured = found.map((pixels, id) =>
    measure(pixels, unlit, distance, owner, id, background, width, height),
  );
  return { background, lighting, measured };
}

/**
 * Soft watercolor rims of neighbouring objects can bridge the gap between them. Within each component, the
 * pixels of at least a third of its strongest contrast form the cores; a component with several cores is
 * split, every weak pixel joining the core it reaches first.
 */
function splitTouching(found: number[][], distance: Float32Array, width: number, height: number): number[][] {
  const out: number[][] = [];
  for (const pixels of found) {
    const sorted = pixels.map((p) => distance[p]!).sort((a, b) => b - a);
    const strong = sorted[Math.floor(sorted.length * 0.1)]! / 3;
    const coreMask = new Uint8Array(width * height);
    for (const p of pixels) if (distance[p]! >= strong) coreMask[p] = 1;
    const cores = components(coreMask, width, height).filter((core) => core.length >= MIN_PIXELS);
    if (cores.length <= 1) {
      out.push(pixels);
      continue;
    }
    const member = new Uint8Array(width * height);
    for (const p of pixels) member[p] = 1;
    const label = new Int32Array(width * height).fill(-1);
    let frontier: number[] = [];
    cores.forEach((core, k) => {
      for (const p of core) {
        label[p] = k;
        frontier.push(p);
      }
    });
    while (frontier.length > 0) {
      const next: number[] = [];
      for (const p of frontier) {
        const x = p % width;
        const y = (p - x) / width;
        for (const [dx, dy] of NEIGHBOURS_8) {
          const nx = x + dx;
          const ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
          const q = ny * width + nx;
          if (member[q] && label[q]! < 0) {
            label[q] = label[p]!;
            next.push(q);
          }
        }
      }
      frontier = next;
    }
    const parts: number[][] = cores.map(() => []);
    for (const p of pixels) if (label[p]! >= 0) parts[label[p]!]!.push(p);
    out.push(...parts);
  }
  return out;
}

const NEIGHBOURS_8 = [
  [-1, -1],
  [0, -1],
  [1, -1],
  [-1, 0],
  [1, 0],
  [-1, 1],
  [0, 1],
  [1, 1],
] as const;

export function detectDetailed(image: RgbImage): DetailedDetection {
  const { background, lighting, measured } = measureImage(image);
  const features = measured.map((m) => m.features);
  const style = classifyStyle(features);
  return {
    objects: measured.map((m) => ({
      shape: classifyShape(m.features, style),
      color: m.color,
      size: classifySize(m.features),
      cx: m.cx,
      cy: m.cy,
      bbox: m.bbox,
    })),
    background,
    lighting,
    style,
    features,
  };
}

export function detect(image: RgbImage): Detection {
  const { objects, background, style, lighting } = detectDetailed(image);
  return { objects, background, style, lighting };
}
