import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { contactSheet } from "../../evals/contact-sheet.ts";
import { exportDataset } from "../../evals/dataset.ts";
import { FAMILIES, type Family } from "../../evals/language/requests.ts";
import { layoutScene } from "../../evals/layout.ts";
import { renderScene } from "../../evals/render.ts";
import { createRng, deriveSeed } from "../../evals/rng.ts";
import { SPLITS, type Split, sampleScene } from "../../evals/sample.ts";
import { parseScene } from "../../evals/scene.ts";
import { encodePng } from "../../pipelines/image.ts";
import { writeCorpus } from "../../planner/corpus.ts";
import { AtelierError, invalid } from "../errors.ts";

export const usage = `atelier world <export|sample|render|chat> [options]

  atelier world export --split train|val|test --n N --seed S --out DIR [--shard-size 10000]
      Writes a training dataset: DIR/index.json, images-XXXXX.u8 (uint8 N×64×64×3, HWC RGB),
      records-XXXXX.jsonl (scene, layout, captions, plan per image). Deterministic by seed.

  atelier world sample [--n 64] [--seed 1] --out DIR [--columns 8] [--scale 2]
      Renders N random scenes (cycling through every shape, colour, style, background and lighting)
      into DIR/contact-sheet.png and DIR/scenes.jsonl.

  atelier world render --scenes FILE.jsonl --out DIR [--seed S] [--columns 8] [--scale 2]
      Renders one scene per line (a scene, or {"scene": …, "seed": N}) to DIR/NNNN.png and
      DIR/contact-sheet.png. The seed (default --seed, 0) picks the free placements and texture.

  atelier world chat --split train|val|test --family train|heldout --n N --seed S --out FILE.jsonl
      Writes the planner's chat corpus: single requests, multi-turn edits and critique revisions, one
      conversation ({"kind", "messages": [{role, content}]}) per line. Deterministic by seed.`;

function integer(
  field: string,
  value: string | undefined,
  fallback: number | undefined,
  min: number,
): number {
  if (value === undefined) {
    if (fallback === undefined) throw invalid(field, "is required");
    return fallback;
  }
  const number = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(number) || number < min) {
    throw invalid(field, `must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  }
  return number;
}

function required(field: string, value: string | undefined): string {
  if (!value) throw invalid(field, "is required");
  return value;
}

async function runExport(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      split: { type: "string" },
      n: { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      "shard-size": { type: "string" },
    },
    strict: true,
  });
  const started = performance.now();
  const n = integer("n", values.n, undefined, 1);
  const index = exportDataset({
    split: required("split", values.split),
    n,
    seed: integer("seed", values.seed, 0, 0),
    out: required("out", values.out),
    shardSize: integer("shard-size", values["shard-size"], 10_000, 1),
    onShard: (shard, done) => console.error(`wrote ${shard.images} (${done}/${n})`),
  });
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${index.split}: ${index.n} images in ${index.shards.length} shard(s) → ${values.out} ` +
      `(${seconds.toFixed(1)} s, ${(index.n / seconds).toFixed(0)} images/s)`,
  );
  return 0;
}

async function runSample(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      n: { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      columns: { type: "string" },
      scale: { type: "string" },
    },
    strict: true,
  });
  const n = integer("n", values.n, 64, 1);
  const seed = integer("seed", values.seed, 1, 0);
  const out = required("out", values.out);
  const rng = createRng(seed);
  const images = [];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const scene = sampleScene(rng, { cycle: i });
    const itemSeed = deriveSeed(seed, i, 1);
    const layout = layoutScene(scene, itemSeed);
    images.push(renderScene(scene, layout, itemSeed));
    lines.push(
      JSON.stringify({ id: `sample-${seed}-${i}`, seed: itemSeed, scene, layout: layout.instances }),
    );
  }
  const sheet = contactSheet(images, {
    columns: integer("columns", values.columns, Math.min(8, n), 1),
    scale: integer("scale", values.scale, 2, 1),
  });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "contact-sheet.png"), encodePng(sheet));
  writeFileSync(join(out, "scenes.jsonl"), `${lines.join("\n")}\n`);
  console.log(`${n} scenes → ${join(out, "contact-sheet.png")}, ${join(out, "scenes.jsonl")}`);
  return 0;
}

async function runRender(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenes: { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      columns: { type: "string" },
      scale: { type: "string" },
    },
    strict: true,
  });
  const file = required("scenes", values.scenes);
  const out = required("out", values.out);
  const seed = integer("seed", values.seed, 0, 0);
  const items = readFileSync(file, "utf8")
    .split("\n")
    .map((line, i) => ({ line: line.trim(), number: i + 1 }))
    .filter(({ line }) => line.length > 0)
    .map(({ line, number }) => {
      const field = `${file}:${number}`;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (error) {
        throw invalid(field, `not valid JSON (${(error as Error).message})`);
      }
      const wrapped = value !== null && typeof value === "object" && "scene" in value;
      const item = value as { scene?: unknown; seed?: unknown };
      const itemSeed = wrapped && item.seed !== undefined ? item.seed : seed;
      if (!Number.isSafeInteger(itemSeed)) throw invalid(`${field}.seed`, "must be an integer");
      const scene = parseScene(wrapped ? item.scene : value, wrapped ? `${field}.scene` : field);
      try {
        return { scene, seed: itemSeed as number, layout: layoutScene(scene, itemSeed as number) };
      } catch (error) {
        if (!(error instanceof AtelierError) || !error.param) throw error;
        throw invalid(`${field}.${error.param}`, error.message.slice(error.param.length + 2));
      }
    });
  if (items.length === 0) throw invalid("scenes", `${file} holds no scenes`);
  mkdirSync(out, { recursive: true });
  const images = items.map(({ scene, seed: itemSeed, layout }, i) => {
    const image = renderScene(scene, layout, itemSeed);
    writeFileSync(join(out, `${String(i).padStart(4, "0")}.png`), encodePng(image));
    return image;
  });
  const sheet = contactSheet(images, {
    columns: integer("columns", values.columns, Math.min(8, images.length), 1),
    scale: integer("scale", values.scale, 2, 1),
  });
  writeFileSync(join(out, "contact-sheet.png"), encodePng(sheet));
  console.log(`${images.length} scenes → ${out}`);
  return 0;
}

async function runChat(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      split: { type: "string" },
      family: { type: "string" },
      n: { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
    },
    strict: true,
  });
  const split = required("split", values.split);
  if (!(SPLITS as readonly string[]).includes(split))
    throw invalid("split", `must be one of ${SPLITS.join(", ")}`);
  const family = values.family ?? "train";
  if (!(FAMILIES as readonly string[]).includes(family)) {
    throw invalid("family", `must be one of ${FAMILIES.join(", ")}`);
  }
  const n = integer("n", values.n, undefined, 1);
  const out = required("out", values.out);
  await writeCorpus(out, n, {
    split: split as Split,
    family: family as Family,
    seed: integer("seed", values.seed, 0, 0),
  });
  console.log(`${n} conversations → ${out}`);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "export":
      return runExport(rest);
    case "sample":
      return runSample(rest);
    case "render":
      return runRender(rest);
    case "chat":
      return runChat(rest);
    default:
      console.error(`${sub ? `unknown world command: ${sub}\n\n` : ""}${usage}`);
      return 2;
  }
}
