/**
 * How well the critique loop's describer verifies generated images: every round of the agent on a sample
 * of single-turn eval prompts is judged by the evaluator's oracle detector (for measurement only; the loop
 * never sees it), and the describer's verdict (agreement 1 with the target plan) is compared with it, also
 * keeping only the matches the describer is at least so certain of (descriptionCertainty).
 *
 *   npx tsx src/agent/verifier-eval.ts [--prompts evals/prompts/shapes-geneval.jsonl] [--every 6] [--models models]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { detect } from "../../evals/detector.ts";
import { judge } from "../../evals/expect.ts";
import { readPromptFile } from "../../evals/language/prompt-file.ts";
import { AgentEngine } from "./engine.ts";

const { values } = parseArgs({
  options: {
    prompts: { type: "string", default: "evals/prompts/shapes-geneval.jsonl" },
    every: { type: "string", default: "6" },
    models: { type: "string", default: "models" },
  },
  strict: true,
});
const root = values.models!;
const engine = await AgentEngine.load({
  ldm: join(root, "ldm"),
  planner: join(root, "planner"),
  projection: join(root, "projection"),
  describer: join(root, "describer"),
});
const every = Number(values.every);
const prompts = readPromptFile(values.prompts!)
  .filter((p) => !p.turns)
  .filter((_, i) => i % every === 0);
const counts = { prompts: 0, firstRoundPasses: 0, returnedPasses: 0, someRoundPasses: 0 };
const verdicts = { match_pass: 0, match_fail: 0, mismatch_pass: 0, mismatch_fail: 0 };
/** The describer's certainty on rounds it calls a full match, with the oracle's verdict. */
const matches: { certainty: number; pass: boolean }[] = [];
for (const [k, prompt] of prompts.entries()) {
  const result = await engine.generate(
    { prompt: prompt.prompt!, seed: 7 + k, rounds: 3 },
    { onEvent: () => {}, signal: new AbortController().signal },
  );
  const passes = result.trace.map((round) => judge(prompt.expect, detect(round.images[0]!)).pass);
  counts.prompts++;
  if (passes[0]) counts.firstRoundPasses++;
  if (judge(prompt.expect, detect(result.images[0]!)).pass) counts.returnedPasses++;
  if (passes.includes(true)) counts.someRoundPasses++;
  result.trace.forEach((round, r) => {
    const match = round.critique!.agreement === 1;
    verdicts[`${match ? "match" : "mismatch"}_${passes[r] ? "pass" : "fail"}`]++;
    const { certainty } = round.critique!.data as { certainty: number | null };
    if (match && certainty !== null) matches.push({ certainty, pass: passes[r]! });
  });
}
// Would a certainty threshold make "full match" a trustworthy verdict? Oracle pass rate of the matches kept.
const byThreshold = [0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9].map((threshold) => {
  const kept = matches.filter((m) => m.certainty >= threshold);
  return { threshold, matches: kept.length, oracle_pass: kept.filter((m) => m.pass).length };
});
console.log(
  JSON.stringify({ ...counts, describer_vs_oracle: verdicts, matches_by_certainty: byThreshold }, null, 2),
);
await engine.dispose();
