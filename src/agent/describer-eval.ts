/**
 * Accuracy of a describer against ground truth, per attribute, on rendered shapes-world images and — given a
 * diffusion model folder — on the same images after a VAE round trip and on images generated from the
 * scene's caption by the frozen model (native text path).
 *
 *   npx tsx src/agent/describer-eval.ts [--n 2000] [--split test] [--seed 3] [--model models/describer]
 *                                       [--ldm models/ldm] [--gen-n 200] [--steps 20] [--guidance 2] [--json FILE]
 *
 * Object fields are scored per target group (a group the description misses is wrong in every field), with
 * the critic's matching; cells are scored against the layout (occupied or empty, shape, colour, size).
 * Generated images are scored against the scene they were asked for, so that column mixes describer and
 * generator errors; the round-trip column isolates the describer on generator-like pixels.
 */
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { type DatasetRecord, datasetItem } from "../../evals/dataset.ts";
import { CELL, GRID } from "../../evals/layout.ts";
import { SPLITS, type Split } from "../../evals/sample.ts";
import type { Scene } from "../../evals/scene.ts";
import type { RgbImage } from "../../pipelines/image.ts";
import { DEFAULTS } from "../defaults.ts";
import { invalid } from "../errors.ts";
import { critique } from "./critic.ts";
import { DEFAULT_DESCRIBER_DIR, type Describer, type Description, LearnedDescriber } from "./describer.ts";

export const ATTRIBUTES = [
  "shape",
  "color",
  "size",
  "count",
  "position",
  "relation",
  "background",
  "style",
  "lighting",
  "extra_objects",
  "plan_exact",
] as const;
export type Attribute = (typeof ATTRIBUTES)[number];

export interface Tally {
  correct: number;
  total: number;
}

export interface DescriberReport {
  n: number;
  /** Share correct per attribute (see the module comment); `total` says how many checks each rests on. */
  attributes: Record<Attribute, Tally & { accuracy: number }>;
  /** Per cell against the layout: occupancy over all cells; shape, colour and size over occupied cells. */
  cells: Record<"occupancy" | "shape" | "color" | "size", Tally & { accuracy: number }>;
  meanAgreement: number;
}

/** Scores descriptions against the records they were made from. */
export function scoreDescriptions(records: DatasetRecord[], descriptions: Description[]): DescriberReport {
  const tally = <K extends string>(keys: readonly K[]) =>
    Object.fromEntries(keys.map((k) => [k, { correct: 0, total: 0 }])) as Record<K, Tally>;
  const attrs = tally(ATTRIBUTES);
  const cells = tally(["occupancy", "shape", "color", "size"] as const);
  const add = (t: Tally, ok: boolean) => {
    t.total += 1;
    if (ok) t.correct += 1;
  };
  let agreementSum = 0;
  records.forEach((record, i) => {
    const truth: Scene = record.scene;
    const description = descriptions[i]!;
    const result = critique(truth, description.scene);
    agreementSum += result.agreement;
    const wrong = (field: string, object: number) =>
      result.issues.some(
        (issue) => issue.object === object && (issue.field === field || issue.field === "missing"),
      );
    truth.objects.forEach((group, object) => {
      add(attrs.shape, !wrong("shape", object));
      add(attrs.color, !wrong("color", object));
      add(attrs.size, !wrong("size", object));
      add(attrs.count, !wrong("count", object));
      if (group.placement.kind === "grid") add(attrs.position, !wrong("position", object));
      if (group.placement.kind === "relation") add(attrs.relation, !wrong("relation", object));
    });
    for (const field of ["background", "style", "lighting"] as const)
      add(attrs[field], truth[field] === description.scene[field]);
    add(attrs.extra_objects, !result.issues.some((issue) => issue.field === "extra"));
    add(attrs.plan_exact, result.agreement === 1);

    if (description.cells) {
      const byCell = new Map<number, DatasetRecord["layout"][number]>();
      for (const inst of record.layout) {
        const col = Math.min(GRID - 1, Math.floor(inst.cx / CELL));
        const row = Math.min(GRID - 1, Math.floor(inst.cy / CELL));
        byCell.set(row * GRID + col, inst);
      }
      description.cells.forEach((reading, c) => {
        const inst = byCell.get(c);
        add(cells.occupancy, (reading.shape !== null) === (inst !== undefined));
        if (!inst) return;
        add(cells.shape, reading.shape === inst.shape);
        add(cells.color, reading.shape !== null && reading.color === inst.color);
        add(cells.size, reading.shape !== null && reading.size === inst.size);
      });
    }
  });
  const withAccuracy = <K extends string>(t: Record<K, Tally>) =>
    Object.fromEntries(
      Object.entries<Tally>(t).map(([k, v]) => [
        k,
        { ...v, accuracy: v.total === 0 ? Number.NaN : v.correct / v.total },
      ]),
    ) as Record<K, Tally & { accuracy: number }>;
  return {
    n: records.length,
    attributes: withAccuracy(attrs),
    cells: withAccuracy(cells),
    meanAgreement: agreementSum / Math.max(1, records.length),
  };
}

export function datasetImage(data: Uint8Array): RgbImage {
  return { width: 64, height: 64, data };
}

async function describeAll(describer: Describer, images: RgbImage[]): Promise<Description[]> {
  if (describer instanceof LearnedDescriber) {
    const out: Description[] = [];
    for (let i = 0; i < images.length; i += 64)
      out.push(...(await describer.describeMany(images.slice(i, i + 64))));
    return out;
  }
  const out: Description[] = [];
  for (const image of images) out.push(await describer.describe(image));
  return out;
}

function table(columns: Record<string, DescriberReport>): string {
  const names = Object.keys(columns);
  const pct = (t: { accuracy: number; total: number }) =>
    t.total === 0 ? "–" : `${(100 * t.accuracy).toFixed(1)}% (${t.total})`;
  const rows = [
    `| attribute | ${names.map((n) => `${n} (n=${columns[n]!.n})`).join(" | ")} |`,
    `|---|${names.map(() => "---").join("|")}|`,
  ];
  for (const a of ATTRIBUTES)
    rows.push(`| ${a} | ${names.map((n) => pct(columns[n]!.attributes[a])).join(" | ")} |`);
  for (const c of ["occupancy", "shape", "color", "size"] as const)
    rows.push(`| cell ${c} | ${names.map((n) => pct(columns[n]!.cells[c])).join(" | ")} |`);
  rows.push(`| mean agreement | ${names.map((n) => columns[n]!.meanAgreement.toFixed(4)).join(" | ")} |`);
  return rows.join("\n");
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      n: { type: "string", default: "2000" },
      split: { type: "string", default: "test" },
      seed: { type: "string", default: "3" },
      model: { type: "string", default: DEFAULT_DESCRIBER_DIR },
      ldm: { type: "string" },
      "gen-n": { type: "string", default: "200" },
      steps: { type: "string", default: String(DEFAULTS.steps) },
      guidance: { type: "string", default: String(DEFAULTS.guidance) },
      threads: { type: "string" },
      json: { type: "string" },
    },
  });
  const int = (name: string, value: string, min: number) => {
    const v = Number(value);
    if (!Number.isInteger(v) || v < min) throw invalid(name, `must be an integer ≥ ${min}, got ${value}`);
    return v;
  };
  const n = int("n", values.n, 1);
  const seed = int("seed", values.seed, 0);
  if (!SPLITS.includes(values.split as Split)) throw invalid("split", `must be one of ${SPLITS.join(", ")}`);
  const split = values.split as Split;
  const threads = values.threads === undefined ? undefined : int("threads", values.threads, 1);

  const describer = await LearnedDescriber.load(values.model, { threads });
  const items = Array.from({ length: n }, (_, i) => datasetItem(split, seed, i));
  const records = items.map((item) => item.record);
  const rendered = items.map((item) => datasetImage(item.image));
  const start = performance.now();
  const columns: Record<string, DescriberReport> = {
    rendered: scoreDescriptions(records, await describeAll(describer, rendered)),
  };
  const msPerImage = (performance.now() - start) / n;

  if (values.ldm) {
    const { loadDiffusionModel } = await import("../../pipelines/model-folder.ts");
    const { BatchNoise, STREAM } = await import("../../pipelines/random.ts");
    const { imagesToPixels, pixelsToImages } = await import("../../pipelines/denoise.ts");
    const { encodePromptPair, txt2img } = await import("../../pipelines/txt2img.ts");
    const model = await loadDiffusionModel(values.ldm, { threads });
    const f = model.vaeScaleFactor;
    if (model.hasVaeEncoder) {
      const roundTrip: RgbImage[] = [];
      for (let i = 0; i < n; i += 32) {
        const batch = rendered.slice(i, i + 32);
        const noise = new BatchNoise(
          batch.map((_, k) => seed + i + k),
          STREAM.vae,
        );
        const latents = await model.encodeImages(imagesToPixels(batch), batch.length, 64, 64, noise);
        const pixels = await model.decodeLatents(latents, batch.length, 64 / f, 64 / f);
        roundTrip.push(...pixelsToImages(pixels, batch.length, 64, 64));
      }
      columns.vae_round_trip = scoreDescriptions(records, await describeAll(describer, roundTrip));
    }
    if (model.hasTextEncoder) {
      const genN = Math.min(n, int("gen-n", values["gen-n"], 1));
      const steps = int("steps", values.steps, 1);
      const guidance = Number(values.guidance);
      const generated: RgbImage[] = [];
      for (const record of records.slice(0, genN)) {
        const { images } = await txt2img(model, await encodePromptPair(model, record.captions[0]!), {
          steps,
          guidance,
          seed: record.seed,
        });
        generated.push(images[0]!);
      }
      columns.generated = scoreDescriptions(records.slice(0, genN), await describeAll(describer, generated));
    }
    await model.dispose();
  }
  await describer.dispose();

  console.log(
    `describer ${values.model} on ${split} scenes (seed ${seed}); ${msPerImage.toFixed(2)} ms per rendered image (batched)`,
  );
  console.log(table(columns));
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ split, seed, columns }, null, 2)}\n`);
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error((error as Error).message);
      process.exit(1);
    },
  );
}
