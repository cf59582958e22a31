import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  createGenerator,
  detectorReport,
  detectorReportMarkdown,
  MODES,
  type Mode,
  runEval,
} from "../../evals/harness.ts";
import { readPromptFile } from "../../evals/language/prompt-file.ts";
import { invalid } from "../errors.ts";
import { registerGenerators } from "../generators/index.ts";

export const usage = `atelier eval --prompts FILE --mode oracle|oracle-vae|native|plan-text|plan|agent [--images-per-prompt 4] [--seed 0] [--categories A,B] --out DIR
atelier eval --detector-report [--n 2000] [--seed 0] [--out DIR]

  Scores a generator GenEval-style: every prompt of FILE (JSONL, DESIGN.md "Eval prompt files") is run
  --images-per-prompt times (edit prompts run their turns in one session; the last image is judged), each
  image is judged by the oracle detector (all clauses must hold), and DIR gets report.json (overall = mean of
  per-category accuracies, categories, held-out vs seen, prompts[] with failing clauses), report.md and
  contact-sheet.png (green/red marks). --mode oracle renders each prompt's expectation (a self-check);
  oracle-vae passes that rendering through the embedded VAE (the most any mode on this model can score);
  native (the text encoder on the prompt), plan-text (the planner's plan as a caption through the
  text encoder), plan (plan → projection) and agent (the critique loop) use the embedded models.

  --detector-report renders N random scenes and prints the detector's accuracy and confusion table per
  attribute (shape, color, size, count, position, background, style, lighting); with --out it also writes
  DIR/detector-report.md and DIR/detector-report.json.

  --models DIR   folder of the embedded models for native|plan-text|plan|agent (default models/)
  --categories A,B   only the prompts of these categories (e.g. color_attr with more images per prompt)`;

function integer(field: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(number) || number < min) {
    throw invalid(field, `must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  }
  return number;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      prompts: { type: "string" },
      mode: { type: "string" },
      "images-per-prompt": { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      models: { type: "string" },
      categories: { type: "string" },
      "detector-report": { type: "boolean" },
      n: { type: "string" },
    },
    strict: true,
  });
  const seed = integer("seed", values.seed, 0, 0);

  if (values["detector-report"]) {
    const n = integer("n", values.n, 2000, 1);
    const started = performance.now();
    const report = detectorReport(n, seed);
    const markdown = detectorReportMarkdown(report);
    console.log(markdown);
    console.error(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
    if (values.out) {
      mkdirSync(values.out, { recursive: true });
      writeFileSync(join(values.out, "detector-report.md"), markdown);
      writeFileSync(join(values.out, "detector-report.json"), `${JSON.stringify(report, null, 2)}\n`);
    }
    return 0;
  }

  if (!values.prompts) throw invalid("prompts", "is required (a JSONL prompt file)");
  if (!values.out) throw invalid("out", "is required (the report folder)");
  const mode = values.mode ?? "oracle";
  if (!(MODES as readonly string[]).includes(mode)) {
    throw invalid("mode", `must be one of ${MODES.join(", ")}, got ${JSON.stringify(mode)}`);
  }
  const imagesPerPrompt = integer("images-per-prompt", values["images-per-prompt"], 4, 1);
  let prompts = readPromptFile(values.prompts);
  if (values.categories !== undefined) {
    const wanted = values.categories.split(",").map((c) => c.trim());
    const known = new Set(prompts.map((p) => p.category));
    const unknown = wanted.filter((c) => !known.has(c));
    if (unknown.length > 0)
      throw invalid(
        "categories",
        `${values.prompts} has no category ${JSON.stringify(unknown[0])}; it has ${[...known].join(", ")}`,
      );
    prompts = prompts.filter((p) => wanted.includes(p.category));
  }
  registerGenerators();
  const generator = await createGenerator(mode as Mode, { models: values.models });
  try {
    const started = performance.now();
    const report = await runEval({
      prompts,
      generator,
      mode,
      imagesPerPrompt,
      seed,
      promptsFile: values.prompts,
      out: values.out,
      onPrompt: (done, total) => {
        if (done % 50 === 0 || done === total) console.error(`${done}/${total} prompts`);
      },
    });
    const seconds = (performance.now() - started) / 1000;
    for (const [name, c] of Object.entries(report.categories)) {
      console.log(`${name.padEnd(18)} ${c.accuracy.toFixed(4)}  (${c.n} prompts)`);
    }
    console.log(
      `held-out ${report.held_out.accuracy.toFixed(4)} (${report.held_out.n}) · seen ${report.seen.accuracy.toFixed(4)} (${report.seen.n})`,
    );
    console.log(`overall ${report.overall.toFixed(4)} → ${values.out}/report.json (${seconds.toFixed(1)} s)`);
  } finally {
    await generator.close?.();
  }
  return 0;
}
