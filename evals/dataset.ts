/**
 * Training datasets of the shapes world, in the format the PyTorch trainer reads (a contract; see
 * `DatasetIndex`). Deterministic by (split, n, seed): item i's scene comes from seed-derived stream (seed, i),
 * so a dataset can be regenerated or extended without storing it. `index.json` is written last: a folder
 * without it is an incomplete export.
 *
 *   DIR/index.json            DatasetIndex
 *   DIR/images-00000.u8       raw uint8, n × 64 × 64 × 3 (HWC, row-major, RGB), no header
 *   DIR/records-00000.jsonl   one DatasetRecord per image, same order
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { invalid } from "../src/errors.ts";
import { captionsFor, printPlan, requestFor } from "./language/index.ts";
import { layoutScene } from "./layout.ts";
import { HEIGHT, renderScene, WIDTH } from "./render.ts";
import { createRng, deriveSeed } from "./rng.ts";
import { HELD_OUT_COLOR_SHAPES, HELD_OUT_RELATIONS, SPLITS, type Split, sampleScene } from "./sample.ts";
import type { Color, Scene, Shape, Size } from "./scene.ts";

export const DATASET_FORMAT = "atelier-shapes-v1";
export const IMAGE_BYTES = HEIGHT * WIDTH * 3;

export interface ShardEntry {
  images: string;
  records: string;
  n: number;
}

export interface DatasetIndex {
  format: typeof DATASET_FORMAT;
  split: Split;
  n: number;
  seed: number;
  image: { height: number; width: number; channels: number };
  shards: ShardEntry[];
  heldOut: {
    colorShapes: typeof HELD_OUT_COLOR_SHAPES;
    relations: typeof HELD_OUT_RELATIONS;
    rule: string;
  };
}

export interface RecordInstance {
  shape: Shape;
  color: Color;
  size: Size;
  cx: number;
  cy: number;
  radius: number;
}

export interface DatasetRecord {
  id: string;
  /** Render seed: `renderScene(scene, layoutScene(scene, seed), seed)` reproduces the image exactly. */
  seed: number;
  scene: Scene;
  layout: RecordInstance[];
  captions: string[];
  /** A chat request for the scene (train phrasing): the planner context for projection training. */
  request: string;
  plan: string;
  /** What people write for this image, for tuning the native text encoder (training/text-set.ts only). */
  texts?: string[];
}

export interface DatasetItem {
  record: DatasetRecord;
  image: Uint8Array;
}

/** Item `index` of the dataset (split, seed): pure, so shards can be produced in any order. */
export function datasetItem(split: Split, seed: number, index: number): DatasetItem {
  const scene = sampleScene(createRng(deriveSeed(seed, index)), { split });
  return sceneItem(scene, deriveSeed(seed, index, 1), `${split}-${seed}-${String(index).padStart(7, "0")}`);
}

/** `scene` laid out, rendered and described with the streams of `itemSeed`. */
export function sceneItem(scene: Scene, itemSeed: number, id: string): DatasetItem {
  const layout = layoutScene(scene, itemSeed);
  const image = renderScene(scene, layout, itemSeed).data;
  const captions = captionsFor(scene, createRng(deriveSeed(itemSeed, 2)));
  const record: DatasetRecord = {
    id,
    seed: itemSeed,
    scene,
    layout: layout.instances.map(({ shape, color, size, cx, cy, radius }) => ({
      shape,
      color,
      size,
      cx,
      cy,
      radius,
    })),
    captions,
    request: requestFor(scene, createRng(deriveSeed(itemSeed, 3))),
    plan: printPlan(scene),
  };
  return { record, image };
}

export interface ExportOptions {
  split: string;
  n: number;
  seed: number;
  out: string;
  shardSize?: number;
  /** Called after each shard is written. */
  onShard?: (shard: ShardEntry, done: number) => void;
  /** Item `index` of another dataset than the world's scenes of `split` (default: datasetItem). */
  item?: (index: number) => DatasetItem;
}

function checkInteger(field: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw invalid(field, `must be an integer ≥ ${min}, got ${value}`);
  }
}

const shardName = (kind: "images" | "records", shard: number, ext: string) =>
  `${kind}-${String(shard).padStart(5, "0")}.${ext}`;

/** Writes a dataset folder; returns its index (also written to DIR/index.json, last). */
export function exportDataset(options: ExportOptions): DatasetIndex {
  const split = options.split as Split;
  if (!SPLITS.includes(split)) throw invalid("split", `must be one of ${SPLITS.join(", ")}, got ${split}`);
  checkInteger("n", options.n, 1);
  checkInteger("seed", options.seed, 0);
  const shardSize = options.shardSize ?? 10_000;
  const item = options.item ?? ((index: number) => datasetItem(split, options.seed, index));
  checkInteger("shard-size", shardSize, 1);
  mkdirSync(options.out, { recursive: true });

  const shards: ShardEntry[] = [];
  for (let start = 0, shard = 0; start < options.n; start += shardSize, shard++) {
    const count = Math.min(shardSize, options.n - start);
    const entry: ShardEntry = {
      images: shardName("images", shard, "u8"),
      records: shardName("records", shard, "jsonl"),
      n: count,
    };
    const imagesFd = openSync(join(options.out, entry.images), "w");
    const recordsFd = openSync(join(options.out, entry.records), "w");
    try {
      // Batches keep the number of write calls low without holding a whole shard in memory.
      const batch = 256;
      const buffer = new Uint8Array(batch * IMAGE_BYTES);
      for (let offset = 0; offset < count; offset += batch) {
        const size = Math.min(batch, count - offset);
        const lines: string[] = [];
        for (let k = 0; k < size; k++) {
          const { record, image } = item(start + offset + k);
          buffer.set(image, k * IMAGE_BYTES);
          lines.push(JSON.stringify(record));
        }
        writeSync(imagesFd, buffer, 0, size * IMAGE_BYTES);
        writeSync(recordsFd, `${lines.join("\n")}\n`);
      }
    } finally {
      closeSync(imagesFd);
      closeSync(recordsFd);
    }
    shards.push(entry);
    options.onShard?.(entry, start + count);
  }

  const index: DatasetIndex = {
    format: DATASET_FORMAT,
    split,
    n: options.n,
    seed: options.seed,
    image: { height: HEIGHT, width: WIDTH, channels: 3 },
    shards,
    heldOut: {
      colorShapes: HELD_OUT_COLOR_SHAPES,
      relations: HELD_OUT_RELATIONS,
      rule:
        "train never contains a colour-shape pair of colorShapes (any count or size) nor a stated relation " +
        "'a relation b' of relations (or its inverse 'b inverse a'); val and test may",
    },
  };
  writeFileSync(join(options.out, "index.json"), `${JSON.stringify(index, null, 2)}\n`);
  return index;
}

function readIndex(dir: string): DatasetIndex {
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as DatasetIndex;
  if (index.format !== DATASET_FORMAT) throw invalid("index.format", `expected ${DATASET_FORMAT}`);
  return index;
}

function readShardRecords(dir: string, entry: ShardEntry, shard: number): DatasetRecord[] {
  const records = readFileSync(join(dir, entry.records), "utf8")
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line, i) => {
      try {
        return JSON.parse(line) as DatasetRecord;
      } catch (error) {
        throw invalid(`${entry.records}:${i + 1}`, `not JSON (${(error as Error).message})`);
      }
    });
  if (records.length !== entry.n) {
    throw invalid(`shards.${shard}.records`, `expected ${entry.n} records, got ${records.length}`);
  }
  return records;
}

/** Reads a dataset folder back (index, then per shard the image bytes and parsed records). */
export function readDataset(dir: string): {
  index: DatasetIndex;
  shards: { images: Uint8Array; records: DatasetRecord[] }[];
} {
  const index = readIndex(dir);
  const shards = index.shards.map((entry, shard) => {
    const images = new Uint8Array(readFileSync(join(dir, entry.images)));
    if (images.length !== entry.n * IMAGE_BYTES) {
      throw invalid(
        `shards.${shard}.images`,
        `expected ${entry.n * IMAGE_BYTES} bytes, got ${images.length}`,
      );
    }
    return { images, records: readShardRecords(dir, entry, shard) };
  });
  return { index, shards };
}

/** The records of a dataset folder in image order, without reading its images. */
export function readDatasetRecords(dir: string): DatasetRecord[] {
  return readIndex(dir).shards.flatMap((entry, shard) => readShardRecords(dir, entry, shard));
}
