/**
 * The planner LLM's chat corpus, built from the shapes world's language: single requests, multi-turn edit
 * dialogues (every assistant turn restates the whole revised plan) and critique revisions. One JSON
 * conversation per line: {"messages": [{"role": "user"|"assistant"|"critique", "content"}], "kind"}.
 */

import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { editDialogue, type Family, printPlan, requestFor } from "../evals/language/index.ts";
import { revisionExample } from "../evals/language/revision.ts";
import { createRng, type Rng } from "../evals/rng.ts";
import { isHeldOut, type Split, sampleScene } from "../evals/sample.ts";
import type { ChatMessage } from "./planner.ts";

export interface Conversation {
  kind: "request" | "edit" | "revision";
  messages: ChatMessage[];
}

export interface CorpusOptions {
  split: Split;
  family: Family;
  seed: number;
}

/** Shares of the corpus: most examples are single requests; edits and revisions teach the other modes. */
const MIX = { request: 0.55, edit: 0.3, revision: 0.15 };

function conversation(rng: Rng, options: CorpusOptions): Conversation {
  const scene = sampleScene(rng, { split: options.split });
  const roll = rng.next();
  if (roll < MIX.request) {
    return {
      kind: "request",
      messages: [
        { role: "user", content: requestFor(scene, rng, options.family) },
        { role: "assistant", content: printPlan(scene) },
      ],
    };
  }
  if (roll < MIX.request + MIX.edit) {
    const reject = options.split === "train" ? (s: typeof scene) => isHeldOut(s).length > 0 : undefined;
    const turns = editDialogue(scene, rng, 2 + rng.int(3), { family: options.family, reject });
    return {
      kind: "edit",
      messages: turns.flatMap((turn): ChatMessage[] => [
        { role: "user", content: turn.request },
        { role: "assistant", content: printPlan(turn.scene) },
      ]),
    };
  }
  const example = revisionExample(scene, rng);
  return {
    kind: "revision",
    messages: [
      { role: "user", content: requestFor(scene, rng, options.family) },
      { role: "assistant", content: example.target },
      { role: "critique", content: example.critique },
      { role: "assistant", content: example.revised },
    ],
  };
}

export function* generateCorpus(n: number, options: CorpusOptions): Generator<Conversation> {
  const rng = createRng(options.seed);
  for (let i = 0; i < n; i++) yield conversation(rng, options);
}

export async function writeCorpus(path: string, n: number, options: CorpusOptions): Promise<void> {
  const out = createWriteStream(path);
  for (const item of generateCorpus(n, options)) {
    if (!out.write(`${JSON.stringify(item)}\n`)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}
