/**
 * The GenEval-style harness: runs every prompt of an eval file N times through a Generator, judges each
 * image with the oracle detector (evals/detector.ts) against the prompt's `expect` block (evals/expect.ts)
 * and writes report.json, report.md and a contact sheet with pass/fail marks.
 *
 * Generators plug in by mode. `oracle` (renders each prompt's expectation; a harness self-check) is built
 * in; `native`, `plan` and `agent` are registered by the issues that build them (`registerGenerator`) and
 * fail with a clear message until then.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodePng, type RgbImage } from "../pipelines/image.ts";
import { AtelierError } from "../src/errors.ts";
import { contactSheet } from "./contact-sheet.ts";
import { type Detection, detect } from "./detector.ts";
import { type Expect, judge, sceneForExpect } from "./expect.ts";
import type { EvalPrompt } from "./language/prompt-file.ts";
import { layoutScene, positionAt } from "./layout.ts";
import { preservation } from "./preservation.ts";
import { renderScene } from "./render.ts";
import {
  type ImageResult,
  type PromptResult,
  promptScore,
  type Report,
  reportMarkdown,
  summarize,
} from "./report.ts";
import { createRng, deriveSeed } from "./rng.ts";
import { sampleScene } from "./sample.ts";

export const MODES = ["oracle", "oracle-vae", "native", "plan-text", "plan", "agent"] as const;
export type Mode = (typeof MODES)[number];

/** One generation: a plain prompt is a single turn; an edit dialogue is several turns of one session. */
export interface GenerationRequest {
  id: string;
  turns: readonly string[];
  /** What the final image must show. Only the oracle reads it; real generators see the turns alone. */
  expect: Expect;
  /**
   * Generators that can call this with the image after each turn (0-based) of an edit dialogue; the
   * harness judges the preservation of the last edit from the images before and after it.
   */
  onTurn?: (turn: number, image: RgbImage) => void;
}

export interface Generator {
  /** Runs the turns in one fresh session, in order, and returns the image after the last turn. */
  generate(request: GenerationRequest, seed: number): Promise<RgbImage>;
  /** Releases models and sessions (optional). */
  close?(): Promise<void>;
}

export interface GeneratorOptions {
  /** Folder of the embedded models (default: `models/`), for generators that load them. */
  models?: string;
}

export type GeneratorFactory = (options: GeneratorOptions) => Promise<Generator>;

/** Renders the prompt's expectation with the world's renderer: what a perfect generator would draw. */
export const oracleGenerator: Generator = {
  async generate(request, seed) {
    const scene = sceneForExpect(request.expect, seed);
    return renderScene(scene, layoutScene(scene, seed), seed);
  },
};

const registry = new Map<Mode, GeneratorFactory>([["oracle", async () => oracleGenerator]]);

const NOT_YET: Record<Mode, string> = {
  oracle: "",
  "oracle-vae": "mode oracle-vae needs the embedded diffusion model's VAE: not available yet",
  native: "mode native needs the embedded diffusion model: not available yet",
  "plan-text": "mode plan-text needs the planner LLM and the embedded diffusion model: not available yet",
  plan: "mode plan needs the planner LLM and the projection layers: not available yet",
  agent: "mode agent needs the critique loop (planner, projection, diffusion): not available yet",
};

/** Plugs a generator into a mode (later issues call this from the module that builds the generator). */
export function registerGenerator(mode: Mode, factory: GeneratorFactory): void {
  registry.set(mode, factory);
}

/** The mode's generator; an AtelierError (501, exit code 1 on the CLI) when none is registered yet. */
export async function createGenerator(mode: Mode, options: GeneratorOptions = {}): Promise<Generator> {
  const factory = registry.get(mode);
  if (!factory) throw new AtelierError(NOT_YET[mode], { status: 501, code: "not_available", param: "mode" });
  return factory(options);
}

/** A stable 32-bit hash of a prompt id, so an image's seed does not move when other prompts are added. */
function idHash(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export function imageSeed(seed: number, id: string, image: number): number {
  return deriveSeed(seed, idHash(id), image);
}

export interface EvalOptions {
  prompts: readonly EvalPrompt[];
  generator: Generator;
  mode: string;
  imagesPerPrompt: number;
  seed: number;
  /** Shown in the report. */
  promptsFile: string;
  /** Output folder: report.json, report.md, contact-sheet.png. Nothing is written when absent. */
  out?: string;
  /** Called after each prompt (progress). */
  onPrompt?: (done: number, total: number) => void;
}

export const CONTACT_SHEET = "contact-sheet.png";
export const categorySheet = (category: string) => `contact-sheet-${category}.png`;

export async function runEval(options: EvalOptions): Promise<Report> {
  const results: PromptResult[] = [];
  const tiles: RgbImage[] = [];
  const marks: boolean[] = [];
  for (const prompt of options.prompts) {
    const turns = prompt.turns ?? [prompt.prompt!];
    const images: ImageResult[] = [];
    for (let k = 0; k < options.imagesPerPrompt; k++) {
      const seed = imageSeed(options.seed, prompt.id, k);
      let before: RgbImage | null = null;
      const onTurn = (turn: number, image: RgbImage) => {
        if (turn === turns.length - 2) before = image;
      };
      const image = await options.generator.generate(
        { id: prompt.id, turns, expect: prompt.expect, onTurn },
        seed,
      );
      const detection = detect(image);
      const judgement = judge(prompt.expect, detection, image.width, image.height);
      const kept = before
        ? preservation(prompt.expect, detect(before), detection, image.width, image.height)
        : undefined;
      images.push({
        seed,
        pass: judgement.pass,
        failing: judgement.clauses.filter((c) => !c.pass),
        ...(kept && { preservation: kept }),
      });
      tiles.push(image);
      marks.push(judgement.pass);
    }
    results.push({
      id: prompt.id,
      category: prompt.category,
      text: prompt.turns ?? prompt.prompt!,
      held_out: prompt.heldout === true,
      score: promptScore(images),
      images,
    });
    options.onPrompt?.(results.length, options.prompts.length);
  }
  const report: Report = {
    mode: options.mode,
    prompts_file: options.promptsFile,
    seed: options.seed,
    images_per_prompt: options.imagesPerPrompt,
    ...summarize(results),
    contact_sheet: CONTACT_SHEET,
    prompts: results,
  };
  if (options.out) {
    mkdirSync(options.out, { recursive: true });
    writeFileSync(join(options.out, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(options.out, "report.md"), reportMarkdown(report));
    // Whole prompts per row: N images side by side, as many prompts as fit in about 16 tiles.
    const perRow = options.imagesPerPrompt * Math.max(1, Math.floor(16 / options.imagesPerPrompt));
    const sheet = contactSheet(tiles, { columns: Math.min(perRow, tiles.length), marks });
    writeFileSync(join(options.out, CONTACT_SHEET), encodePng(sheet));
    // One small sheet per category: its first prompts, up to 16 images.
    let first = 0;
    const byCategory = new Map<string, number[]>();
    for (const result of results) {
      const indexes = byCategory.get(result.category) ?? [];
      for (let k = 0; k < result.images.length; k++) if (indexes.length < 16) indexes.push(first + k);
      byCategory.set(result.category, indexes);
      first += result.images.length;
    }
    for (const [category, indexes] of byCategory) {
      const picked = contactSheet(
        indexes.map((i) => tiles[i]!),
        { columns: Math.min(8, indexes.length), marks: indexes.map((i) => marks[i]) },
      );
      writeFileSync(join(options.out, categorySheet(category)), encodePng(picked));
    }
  }
  return report;
}

/** Per-attribute confusion counts (truth → detected → count) of the detector on random rendered scenes. */
export interface DetectorReport {
  n: number;
  seed: number;
  attributes: Record<
    string,
    { accuracy: number; total: number; confusion: Record<string, Record<string, number>> }
  >;
}

/** Detected centres farther than this (px) from every unmatched instance count as spurious. */
const MATCH_RADIUS = 5;
export const MISSED = "(missed)";
export const SPURIOUS = "(spurious)";

/**
 * Renders `n` random scenes (the world's sampler: every shape, colour, size, count, placement, style,
 * background and lighting) and compares the detector with the ground truth. Objects are matched to
 * instances greedily by centre distance; a missed instance counts as wrong in every object attribute.
 */
export function detectorReport(n: number, seed: number): DetectorReport {
  const rng = createRng(deriveSeed(seed, 0xde7));
  const tables: Record<string, Record<string, Record<string, number>>> = {};
  const tally = (attribute: string, truth: string, got: string) => {
    tables[attribute] ??= {};
    tables[attribute][truth] ??= {};
    const row = tables[attribute][truth];
    row[got] = (row[got] ?? 0) + 1;
  };
  for (let s = 0; s < n; s++) {
    const scene = sampleScene(rng);
    const layoutSeed = deriveSeed(seed, s);
    const layout = layoutScene(scene, layoutSeed);
    const detection: Detection = detect(renderScene(scene, layout, layoutSeed));
    for (const field of ["background", "style", "lighting"] as const)
      tally(field, scene[field], detection[field]);
    tally("count", String(layout.instances.length), String(detection.objects.length));
    const pairs = layout.instances.flatMap((instance, i) =>
      detection.objects.map((o, j) => ({ i, j, d: Math.hypot(o.cx - instance.cx, o.cy - instance.cy) })),
    );
    pairs.sort((a, b) => a.d - b.d);
    const matchOf = new Map<number, number>();
    const used = new Set<number>();
    for (const { i, j, d } of pairs) {
      if (d > MATCH_RADIUS || matchOf.has(i) || used.has(j)) continue;
      matchOf.set(i, j);
      used.add(j);
    }
    layout.instances.forEach((instance, i) => {
      const j = matchOf.get(i);
      const o = j === undefined ? undefined : detection.objects[j]!;
      tally("shape", instance.shape, o?.shape ?? MISSED);
      tally("color", instance.color, o?.color ?? MISSED);
      tally("size", instance.size, o?.size ?? MISSED);
      tally("position", positionAt(instance.cx, instance.cy), o ? positionAt(o.cx, o.cy) : MISSED);
    });
    detection.objects.forEach((o, j) => {
      if (!used.has(j)) tally("shape", SPURIOUS, o.shape);
    });
  }
  const attributes: DetectorReport["attributes"] = {};
  for (const [attribute, confusion] of Object.entries(tables)) {
    let total = 0;
    let correct = 0;
    for (const [truth, row] of Object.entries(confusion)) {
      for (const [got, count] of Object.entries(row)) {
        total += count;
        if (truth === got) correct += count;
      }
    }
    attributes[attribute] = { accuracy: correct / total, total, confusion };
  }
  return { n, seed, attributes };
}

/** The detector report as Markdown: accuracy per attribute, then each confusion table (rows: truth). */
export function detectorReportMarkdown(report: DetectorReport): string {
  const order = ["shape", "color", "size", "count", "position", "background", "style", "lighting"];
  const lines = [
    `# Oracle detector on ${report.n} random rendered scenes (seed ${report.seed})`,
    "",
    "| attribute | accuracy | judged |",
    "|---|---:|---:|",
    ...order
      .filter((a) => report.attributes[a])
      .map((a) => {
        const { accuracy, total } = report.attributes[a]!;
        return `| ${a} | ${(100 * accuracy).toFixed(2)}% | ${total} |`;
      }),
  ];
  for (const attribute of order) {
    const entry = report.attributes[attribute];
    if (!entry) continue;
    const truths = Object.keys(entry.confusion).sort();
    const predicted = [...new Set(truths.flatMap((t) => Object.keys(entry.confusion[t]!)))].sort();
    lines.push("", `## ${attribute} (rows: truth, columns: detected)`, "");
    lines.push(
      `| truth \\ detected | ${predicted.join(" | ")} |`,
      `|---|${predicted.map(() => "---:").join("|")}|`,
    );
    for (const truth of truths) {
      lines.push(`| ${truth} | ${predicted.map((p) => entry.confusion[truth]![p] ?? 0).join(" | ")} |`);
    }
  }
  return `${lines.join("\n")}\n`;
}
