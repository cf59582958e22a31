import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { readPromptFile } from "../../evals/language/prompt-file.ts";
import { planAccuracy } from "../../planner/accuracy.ts";
import { planEval } from "../../planner/plan-eval.ts";
import { Planner } from "../../planner/planner.ts";
import { invalid } from "../errors.ts";

export const usage = `atelier plan "request" [--model DIR] [--temperature T] [--top-p P] [--seed S] [--json]
atelier plan --accuracy CORPUS.jsonl [--n N] [--model DIR]
atelier plan --eval PROMPTS.jsonl [--out DIR] [--model DIR]

Plans an image for the request with the planner LLM (default: models/planner) under the plan grammar, and
prints the plan text, the parsed plan as JSON and the number of tokens in the plan span.
Sampling: --temperature > 0 samples (with --seed for repeatable output); the default is greedy.

--accuracy answers the last user turn of each conversation of a chat corpus (\`atelier world chat\`) and
prints the share of plans equal to the corpus's plan, per kind (request, edit, revision).

--eval plans every prompt of an eval prompt file (edit prompts as one conversation), draws the last plan
with the shapes world's renderer and judges it like \`atelier eval\`: the planner's own score, the ceiling
of the plan and agent modes. --out DIR writes report.json, report.md and the contact sheet.

--ungrounded turns off grounded decoding (plans may then use values the request gives no evidence for;
planner/grounding.ts), for comparison.`;

function number(field: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < min || parsed > max) {
    throw invalid(field, `must be a number in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return parsed;
}

function modelDir(model: string | undefined): string {
  return resolve(model ?? process.env.ATELIER_PLANNER ?? "models/planner");
}

async function runAccuracy(
  corpus: string,
  n: string | undefined,
  model: string | undefined,
  grounded: boolean,
): Promise<number> {
  const limit = number("n", n, 1, Number.MAX_SAFE_INTEGER) ?? Number.POSITIVE_INFINITY;
  const planner = await Planner.load(modelDir(model));
  try {
    const report = await planAccuracy(planner, corpus, limit, { grounded });
    for (const [kind, entry] of Object.entries(report.kinds)) {
      console.log(`${kind.padEnd(9)} ${entry.accuracy.toFixed(4)}  (${entry.correct}/${entry.n})`);
    }
    console.log(`parsed ${report.parsed}/${report.total}; ${report.msPerPlan.toFixed(1)} ms per plan`);
    for (const failure of report.failures.slice(0, 5)) {
      console.log(
        `✗ [${failure.kind}] ${failure.request}\n    expected ${failure.expected}\n    got      ${failure.got}`,
      );
    }
  } finally {
    await planner.dispose();
  }
  return 0;
}

async function runPlanEval(
  file: string,
  out: string | undefined,
  model: string | undefined,
  grounded: boolean,
): Promise<number> {
  const prompts = readPromptFile(file);
  const planner = await Planner.load(modelDir(model));
  try {
    const report = await planEval(planner, prompts, file, { grounded, out });
    for (const [category, entry] of Object.entries(report.categories)) {
      console.log(`${category.padEnd(18)} ${entry.accuracy.toFixed(4)}  (${entry.n} prompts)`);
    }
    console.log(`held-out ${report.held_out.accuracy.toFixed(4)} · seen ${report.seen.accuracy.toFixed(4)}`);
    console.log(`overall ${report.overall.toFixed(4)}${out ? ` → ${out}/report.json` : ""}`);
  } finally {
    await planner.dispose();
  }
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
      json: { type: "boolean" },
      accuracy: { type: "string" },
      n: { type: "string" },
      eval: { type: "string" },
      out: { type: "string" },
      ungrounded: { type: "boolean" },
    },
    strict: true,
  });
  const grounded = !values.ungrounded;
  if (values.accuracy) return runAccuracy(values.accuracy, values.n, values.model, grounded);
  if (values.eval) return runPlanEval(values.eval, values.out, values.model, grounded);
  if (positionals.length !== 1) throw invalid("prompt", "give exactly one request (quote it)");
  const options = {
    temperature: number("temperature", values.temperature, 0, 5),
    topP: number("top-p", values["top-p"], 0, 1),
    seed: number("seed", values.seed, 0, 2 ** 32 - 1),
    grounded,
  };
  const planner = await Planner.load(
    resolve(values.model ?? process.env.ATELIER_PLANNER ?? "models/planner"),
  );
  try {
    const result = await planner.plan([{ role: "user", content: positionals[0]! }], options);
    if (values.json) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      console.log(result.text);
      console.log(JSON.stringify(result.scene, null, 2));
      console.log(
        `plan span: ${result.tokens} tokens${result.repairs.length ? `; repaired: ${result.repairs.join("; ")}` : ""}`,
      );
    }
  } finally {
    await planner.dispose();
  }
  return 0;
}
