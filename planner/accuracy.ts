/**
 * Plan accuracy on a chat corpus (`atelier world chat`): for each conversation the planner answers its last
 * user turn (earlier assistant turns are the corpus's plans) and the parsed plan must equal the corpus's
 * plan field by field. Reported per kind: single requests, the last turn of edit dialogues, revisions.
 */
import { readFileSync } from "node:fs";
import { parsePlan } from "../evals/language/plan.ts";
import type { Conversation } from "./corpus.ts";
import type { Planner, PlanOptions } from "./planner.ts";

export interface AccuracyReport {
  kinds: Record<string, { n: number; correct: number; accuracy: number }>;
  parsed: number;
  total: number;
  /** Mean milliseconds per plan (generation only). */
  msPerPlan: number;
  failures: { kind: string; request: string; expected: string; got: string }[];
}

export async function planAccuracy(
  planner: Planner,
  corpusPath: string,
  limit = Infinity,
  options: PlanOptions = {},
): Promise<AccuracyReport> {
  const conversations = readFileSync(corpusPath, "utf8")
    .split("\n")
    .filter(Boolean)
    .slice(0, limit)
    .map((line) => JSON.parse(line) as Conversation);
  const kinds: AccuracyReport["kinds"] = {};
  const failures: AccuracyReport["failures"] = [];
  let parsed = 0;
  let elapsed = 0;
  for (const conversation of conversations) {
    const expected = conversation.messages.at(-1)!.content;
    const context = conversation.messages.slice(0, -1);
    const started = performance.now();
    const result = await planner.plan(context, options);
    elapsed += performance.now() - started;
    parsed += 1; // plan() throws when the output does not parse
    const ok = JSON.stringify(result.scene) === JSON.stringify(parsePlan(expected));
    kinds[conversation.kind] ??= { n: 0, correct: 0, accuracy: 0 };
    const entry = kinds[conversation.kind]!;
    entry.n += 1;
    if (ok) entry.correct += 1;
    else if (failures.length < 20) {
      failures.push({
        kind: conversation.kind,
        request: context.at(-1)!.content,
        expected,
        got: result.text,
      });
    }
  }
  for (const entry of Object.values(kinds)) entry.accuracy = entry.correct / entry.n;
  return { kinds, parsed, total: conversations.length, msPerPlan: elapsed / conversations.length, failures };
}
