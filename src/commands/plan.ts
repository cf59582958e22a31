import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Planner } from "../../planner/planner.ts";
import { invalid } from "../errors.ts";

export const usage = `atelier plan "request" [--model DIR] [--temperature T] [--top-p P] [--seed S] [--json]

Plans an image for the request with the planner LLM (default: models/planner) under the plan grammar, and
prints the plan text, the parsed plan as JSON and the number of tokens in the plan span.
Sampling: --temperature > 0 samples (with --seed for repeatable output); the default is greedy.`;

function number(field: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < min || parsed > max) {
    throw invalid(field, `must be a number in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return parsed;
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
    },
    strict: true,
  });
  if (positionals.length !== 1) throw invalid("prompt", "give exactly one request (quote it)");
  const options = {
    temperature: number("temperature", values.temperature, 0, 5),
    topP: number("top-p", values["top-p"], 0, 1),
    seed: number("seed", values.seed, 0, 2 ** 32 - 1),
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
