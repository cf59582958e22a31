/**
 * The describer: re-describes an image in the plan format, for the critic to compare with the plan the image
 * was generated from (primer, "Iterative Refinement with LLM-in-the-Loop").
 *
 * The embedded default is a small learned image-to-plan model (training/describer.py, committed in
 * models/describer/): a CNN with per-cell heads for the 3×3 grid (empty or shape, colour, size) and global
 * heads (background, style, lighting). It never calls the evaluator's oracle detector. Its labels are
 * assembled into a Scene here: objects of one shape and colour in several cells become one group with that
 * count ("anywhere"), a single object gets its grid position; the result always satisfies the scene model.
 */
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import * as ort from "onnxruntime-node";
import { printPlan } from "../../evals/language/plan.ts";
import {
  BACKGROUNDS,
  type Background,
  COLORS,
  type Color,
  LIGHTINGS,
  type Lighting,
  MAX_COUNT,
  MAX_GROUPS,
  type ObjectGroup,
  POSITIONS,
  type Position,
  parseScene,
  type Scene,
  SHAPES,
  type Shape,
  SIZES,
  type Size,
  STYLES,
  type Style,
} from "../../evals/scene.ts";
import type { RgbImage } from "../../pipelines/image.ts";
import { AtelierError, invalid } from "../errors.ts";

/** Confidence (a probability under the model) of each field of a described group. */
export interface GroupConfidence {
  shape: number;
  color: number;
  size: number;
  /** Probability that exactly the group's cells, and no other, hold an object of this shape and colour. */
  count: number;
  /** For a single object, probability that its cell holds it; 1 for a group placed anywhere. */
  placement: number;
}

export interface DescriptionConfidence {
  background: number;
  style: number;
  lighting: number;
  /** Aligned with `scene.objects`. */
  objects: GroupConfidence[];
}

/** What the model saw in one grid cell. */
export interface CellReading {
  position: Position;
  /** null: the cell is empty. */
  shape: Shape | null;
  color: Color;
  size: Size;
  /** Probability of `shape` (of "empty" when shape is null). */
  confidence: number;
}

export interface Description {
  scene: Scene;
  /** The scene in the canonical plan format. */
  plan: string;
  /** Per-field confidence; null when the describer cannot tell (adapters over text-only answers). */
  confidence: DescriptionConfidence | null;
  /** Per-cell readings of the embedded model. */
  cells?: CellReading[];
  /** The free text an adapter's model answered, before it was turned into a plan. */
  text?: string;
}

export interface DescribeOptions {
  signal?: AbortSignal;
}

export interface Describer {
  /** "embedded", "transformers:<folder>" or "langchain:<model type>". */
  readonly name: string;
  describe(image: RgbImage, options?: DescribeOptions): Promise<Description>;
  dispose(): Promise<void>;
}

export const DESCRIBER_FORMAT = "atelier-describer-v1";
/** Side of the square image the embedded model reads; other sizes are resampled. */
export const DESCRIBER_SIZE = 64;
const CELLS = 9;

/** Softmax outputs of the model for one image. */
export interface HeadProbabilities {
  /** [9 × 7]: empty, then SHAPES. */
  shape: Float32Array;
  /** [9 × 7]: COLORS. */
  color: Float32Array;
  /** [9 × 3]: SIZES. */
  size: Float32Array;
  background: Float32Array;
  style: Float32Array;
  lighting: Float32Array;
}

const argmax = (p: ArrayLike<number>, from = 0, to = p.length): number => {
  let best = from;
  for (let i = from + 1; i < to; i++) if (p[i]! > p[best]!) best = i;
  return best;
};

interface Found {
  cell: number;
  shape: number;
  color: number;
  /** P(this shape and this colour in the cell), under independent heads. */
  presence: number;
}

/**
 * Assembles head probabilities into a valid Scene. Exported for tests: the runtime's whole interpretation
 * of the model's outputs lives here.
 */
export function sceneFromHeads(p: HeadProbabilities): {
  scene: Scene;
  confidence: DescriptionConfidence;
  cells: CellReading[];
} {
  const shapeK = SHAPES.length + 1;
  const colorK = COLORS.length;
  const sizeK = SIZES.length;
  const cells: CellReading[] = [];
  const found: Found[] = [];
  for (let c = 0; c < CELLS; c++) {
    const s = argmax(p.shape, c * shapeK, (c + 1) * shapeK) - c * shapeK;
    const color = argmax(p.color, c * colorK, (c + 1) * colorK) - c * colorK;
    const size = argmax(p.size, c * sizeK, (c + 1) * sizeK) - c * sizeK;
    cells.push({
      position: POSITIONS[c]!,
      shape: s === 0 ? null : SHAPES[s - 1]!,
      color: COLORS[color]!,
      size: SIZES[size]!,
      confidence: p.shape[c * shapeK + s]!,
    });
    if (s > 0)
      found.push({
        cell: c,
        shape: s,
        color,
        presence: p.shape[c * shapeK + s]! * p.color[c * colorK + color]!,
      });
  }
  if (found.length === 0) {
    // A scene holds at least one object: take the cell the model finds least empty.
    let cell = 0;
    for (let c = 1; c < CELLS; c++) if (p.shape[c * shapeK]! < p.shape[cell * shapeK]!) cell = c;
    const s = argmax(p.shape, cell * shapeK + 1, (cell + 1) * shapeK) - cell * shapeK;
    const color = argmax(p.color, cell * colorK, (cell + 1) * colorK) - cell * colorK;
    found.push({
      cell,
      shape: s,
      color,
      presence: p.shape[cell * shapeK + s]! * p.color[cell * colorK + color]!,
    });
  }

  // One group per shape and colour (the world never repeats a kind across groups), in reading order.
  const kinds = new Map<string, Found[]>();
  for (const f of found) {
    const key = `${f.shape}/${f.color}`;
    const members = kinds.get(key) ?? [];
    members.push(f);
    kinds.set(key, members);
  }
  let groups = [...kinds.values()].map((members) =>
    // More than MAX_COUNT of a kind cannot be planned: keep the most certain ones.
    members.length > MAX_COUNT
      ? members
          .slice()
          .sort((a, b) => b.presence - a.presence)
          .slice(0, MAX_COUNT)
          .sort((a, b) => a.cell - b.cell)
      : members,
  );
  if (groups.length > MAX_GROUPS) {
    const certainty = (g: Found[]) => g.reduce((sum, f) => sum + f.presence, 0) / g.length;
    const keep = new Set(
      groups
        .slice()
        .sort((a, b) => certainty(b) - certainty(a))
        .slice(0, MAX_GROUPS),
    );
    groups = groups.filter((g) => keep.has(g));
  }

  const objects: ObjectGroup[] = [];
  const confidences: GroupConfidence[] = [];
  for (const members of groups) {
    const { shape, color } = members[0]!;
    // A group shares one size: vote with the size probabilities of its cells.
    const votes = new Float64Array(sizeK);
    for (const f of members)
      for (let k = 0; k < sizeK; k++) votes[k] = votes[k]! + p.size[f.cell * sizeK + k]!;
    const size = argmax(votes);
    const inGroup = new Set(members.map((f) => f.cell));
    let count = 1;
    for (let c = 0; c < CELLS; c++) {
      const here = p.shape[c * shapeK + shape]! * p.color[c * colorK + color]!;
      count *= inGroup.has(c) ? here : 1 - here;
    }
    const mean = (f: (m: Found) => number) => members.reduce((sum, m) => sum + f(m), 0) / members.length;
    const single = members.length === 1;
    objects.push({
      shape: SHAPES[shape - 1]!,
      color: COLORS[color]!,
      size: SIZES[size]!,
      count: members.length,
      placement: single ? { kind: "grid", position: POSITIONS[members[0]!.cell]! } : { kind: "free" },
    });
    confidences.push({
      shape: mean((m) => p.shape[m.cell * shapeK + shape]!),
      color: mean((m) => p.color[m.cell * colorK + color]!),
      size: votes[size]! / members.length,
      count,
      placement: single ? members[0]!.presence : 1,
    });
  }
  const bg = argmax(p.background);
  const style = argmax(p.style);
  const lighting = argmax(p.lighting);
  const scene = parseScene({
    objects,
    background: BACKGROUNDS[bg] as Background,
    style: STYLES[style] as Style,
    lighting: LIGHTINGS[lighting] as Lighting,
  });
  return {
    scene,
    cells,
    confidence: {
      background: p.background[bg]!,
      style: p.style[style]!,
      lighting: p.lighting[lighting]!,
      objects: confidences,
    },
  };
}

/**
 * How sure the describer is of its whole description: the product of the probabilities of every reading it
 * made (each cell's shape or emptiness, each group's colour and size, background, style, lighting), so one
 * doubtful cell makes the whole description doubtful. null when the describer gives no probabilities.
 */
export function descriptionCertainty(description: Description): number | null {
  const c = description.confidence;
  if (!c) return null;
  let product = c.background * c.style * c.lighting;
  for (const group of c.objects) product *= group.color * group.size;
  if (description.cells) for (const cell of description.cells) product *= cell.confidence;
  else for (const group of c.objects) product *= group.shape * group.count;
  return product;
}

/**
 * Resamples an RGB image to size × size as float CHW in [0, 1], written at `out[offset…]`: each output
 * pixel averages the source over its footprint (box filter), which is exact for integer down-scaling and
 * bilinear-like otherwise.
 */
export function toPixelValues(image: RgbImage, size: number, out: Float32Array, offset: number): void {
  const { width, height, data } = image;
  const plane = size * size;
  if (width === size && height === size) {
    for (let i = 0; i < plane; i++) {
      out[offset + i] = data[i * 3]! / 255;
      out[offset + plane + i] = data[i * 3 + 1]! / 255;
      out[offset + 2 * plane + i] = data[i * 3 + 2]! / 255;
    }
    return;
  }
  const sx = width / size;
  const sy = height / size;
  // At least 2 samples per axis and per output pixel, more when shrinking.
  const nx = Math.max(2, Math.ceil(sx * 2));
  const ny = Math.max(2, Math.ceil(sy * 2));
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let j = 0; j < ny; j++) {
        const v = Math.min(height - 1, Math.floor((y + (j + 0.5) / ny) * sy));
        for (let i = 0; i < nx; i++) {
          const u = Math.min(width - 1, Math.floor((x + (i + 0.5) / nx) * sx));
          const k = (v * width + u) * 3;
          r += data[k]!;
          g += data[k + 1]!;
          b += data[k + 2]!;
        }
      }
      const n = nx * ny * 255;
      const p = y * size + x;
      out[offset + p] = r / n;
      out[offset + plane + p] = g / n;
      out[offset + 2 * plane + p] = b / n;
    }
  }
}

export interface DescriberManifest {
  format: string;
  cell_heads: { cell_shape: string[]; cell_color: string[]; cell_size: string[] };
  global_heads: { background: string[]; style: string[]; lighting: string[] };
  params: number;
  training: Record<string, unknown>;
  reference: { input: string; outputs: Record<string, number[]> };
}

function modelError(message: string, param: string | null = "describer"): AtelierError {
  return new AtelierError(message, { status: 500, code: "model_invalid", param });
}

const HEADS = ["cell_shape", "cell_color", "cell_size", "background", "style", "lighting"] as const;

function checkManifest(dir: string): DescriberManifest {
  const path = join(dir, "describer.json");
  if (!existsSync(path)) throw modelError(`${dir} is not a describer folder (no describer.json)`);
  let manifest: DescriberManifest;
  try {
    manifest = JSON.parse(readFileSync(path, "utf8")) as DescriberManifest;
  } catch (error) {
    throw modelError(`${path}: not JSON (${(error as Error).message})`);
  }
  if (manifest.format !== DESCRIBER_FORMAT)
    throw modelError(`${path}: format must be ${DESCRIBER_FORMAT}, got ${manifest.format}`);
  // The model's label order must be the scene model's, or every reading would be silently wrong.
  const expected: Record<string, readonly string[]> = {
    cell_shape: ["empty", ...SHAPES],
    cell_color: COLORS,
    cell_size: SIZES,
    background: BACKGROUNDS,
    style: STYLES,
    lighting: LIGHTINGS,
  };
  const heads: Record<string, string[] | undefined> = { ...manifest.cell_heads, ...manifest.global_heads };
  for (const [head, labels] of Object.entries(expected)) {
    if (JSON.stringify(heads[head]) !== JSON.stringify(labels))
      throw modelError(`${path}: head ${head} must have labels ${labels.join(", ")}`);
  }
  return manifest;
}

function softmaxRows(logits: Float32Array, rowLength: number, row0: number, rows: number): Float32Array {
  const out = new Float32Array(rows * rowLength);
  for (let r = 0; r < rows; r++) {
    const base = (row0 + r) * rowLength;
    let max = -Infinity;
    for (let k = 0; k < rowLength; k++) max = Math.max(max, logits[base + k]!);
    let sum = 0;
    for (let k = 0; k < rowLength; k++) {
      const e = Math.exp(logits[base + k]! - max);
      out[r * rowLength + k] = e;
      sum += e;
    }
    for (let k = 0; k < rowLength; k++) out[r * rowLength + k] = out[r * rowLength + k]! / sum;
  }
  return out;
}

export interface LoadDescriberOptions {
  /** Intra-op threads of the ONNX session (default: all cores). */
  threads?: number;
}

/** The embedded image-to-plan model; one ONNX session, created at load and reused by every call. */
export class LearnedDescriber implements Describer {
  readonly name = "embedded";

  private constructor(
    readonly dir: string,
    readonly manifest: DescriberManifest,
    private readonly session: ort.InferenceSession,
  ) {}

  static async load(dirPath: string, options: LoadDescriberOptions = {}): Promise<LearnedDescriber> {
    const dir = resolve(dirPath);
    if (options.threads !== undefined && (!Number.isInteger(options.threads) || options.threads < 1))
      throw invalid("threads", `must be a positive integer, got ${options.threads}`);
    const manifest = checkManifest(dir);
    const modelPath = join(dir, "model.onnx");
    if (!existsSync(modelPath)) throw modelError(`${dir}: missing model.onnx`);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelPath, {
        intraOpNumThreads: options.threads ?? availableParallelism(),
        interOpNumThreads: 1,
        executionMode: "sequential",
        graphOptimizationLevel: "all",
      });
    } catch (error) {
      throw modelError(`cannot load ${modelPath}: ${(error as Error).message}`);
    }
    for (const head of HEADS)
      if (!session.outputNames.includes(head)) throw modelError(`${modelPath} has no output ${head}`);
    if (!session.inputNames.includes("pixel_values"))
      throw modelError(`${modelPath} has no input pixel_values`);
    return new LearnedDescriber(dir, manifest, session);
  }

  /** Raw head logits for float pixels [B,3,64,64] in [0,1]. */
  async logits(pixels: Float32Array, batch: number): Promise<Record<(typeof HEADS)[number], Float32Array>> {
    const input = new ort.Tensor("float32", pixels, [batch, 3, DESCRIBER_SIZE, DESCRIBER_SIZE]);
    const out = await this.session.run({ pixel_values: input });
    return Object.fromEntries(HEADS.map((h) => [h, out[h]!.data as Float32Array])) as Record<
      (typeof HEADS)[number],
      Float32Array
    >;
  }

  /** Describes several images in one forward pass. */
  async describeMany(images: RgbImage[], options: DescribeOptions = {}): Promise<Description[]> {
    if (images.length === 0) return [];
    images.forEach((image, i) => {
      if (
        !image ||
        image.width < 1 ||
        image.height < 1 ||
        image.data.length !== image.width * image.height * 3
      )
        throw invalid(`images.${i}`, "must be an RGB image (width × height × 3 bytes)");
    });
    options.signal?.throwIfAborted();
    const plane = 3 * DESCRIBER_SIZE * DESCRIBER_SIZE;
    const pixels = new Float32Array(images.length * plane);
    images.forEach((image, i) => {
      toPixelValues(image, DESCRIBER_SIZE, pixels, i * plane);
    });
    const logits = await this.logits(pixels, images.length);
    options.signal?.throwIfAborted();
    return images.map((_, b) => {
      const heads: HeadProbabilities = {
        shape: softmaxRows(logits.cell_shape, SHAPES.length + 1, b * CELLS, CELLS),
        color: softmaxRows(logits.cell_color, COLORS.length, b * CELLS, CELLS),
        size: softmaxRows(logits.cell_size, SIZES.length, b * CELLS, CELLS),
        background: softmaxRows(logits.background, BACKGROUNDS.length, b, 1),
        style: softmaxRows(logits.style, STYLES.length, b, 1),
        lighting: softmaxRows(logits.lighting, LIGHTINGS.length, b, 1),
      };
      const { scene, confidence, cells } = sceneFromHeads(heads);
      return { scene, plan: printPlan(scene), confidence, cells };
    });
  }

  async describe(image: RgbImage, options: DescribeOptions = {}): Promise<Description> {
    if (!image || image.width < 1 || image.height < 1 || image.data.length !== image.width * image.height * 3)
      throw invalid("image", "must be an RGB image (width × height × 3 bytes)");
    return (await this.describeMany([image], options))[0]!;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** The committed embedded model. */
export const DEFAULT_DESCRIBER_DIR = resolve(import.meta.dirname, "../../models/describer");

export function loadDescriber(
  dir: string = DEFAULT_DESCRIBER_DIR,
  options: LoadDescriberOptions = {},
): Promise<LearnedDescriber> {
  return LearnedDescriber.load(dir, options);
}
