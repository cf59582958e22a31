/**
 * More chat requests for every image of an exported dataset, for tuning the native text encoder
 * (`training/ldm.py --tune-text`): people's prompts leave attributes out, and a request (train phrasing)
 * leaves out only what REQUEST_DEFAULTS supplies, so an image paired with it teaches the encoder that an
 * unsized object is large and an unstated background white — the meaning the planner gives them. A request
 * with its colour words taken out teaches that an unstated colour is any colour; a GenEval-like "a photo of …"
 * in the same words keeps the caption form people and benchmarks write.
 *
 * Writes DIR/requests.jsonl: one line per record, {"id", "texts": [PER requests, the first without colours,
 * "a photo of …" (its colours left out 30 % of the time)]}.
 *
 *   npx tsx training/request-texts.ts --data data/train-r --per 3
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REQUEST_FRAMES, type RequestFrames, requestFor } from "../evals/language/requests.ts";
import { createRng, deriveSeed } from "../evals/rng.ts";
import { COLORS, type Scene } from "../evals/scene.ts";

const { values } = parseArgs({
  options: { data: { type: "string" }, per: { type: "string", default: "3" } },
  strict: true,
});
if (!values.data) throw new Error("--data DIR is required (a folder written by `atelier world export`)");
const per = Number(values.per);
if (!Number.isInteger(per) || per < 1) throw new Error(`--per must be an integer ≥ 1, got ${values.per}`);

const COLOR_WORD = new RegExp(`\\b(${COLORS.join("|")}) `, "g");
const withoutColors = (text: string) => text.replace(COLOR_WORD, "").replace(/\ban (?=[^aeiou])/g, "a ");
const PHOTO: RequestFrames = { ...REQUEST_FRAMES.train, openers: ["a photo of {x}", "a picture of {x}", "an image of {x}"] };
const index = JSON.parse(readFileSync(join(values.data, "index.json"), "utf8"));
const lines: string[] = [];
for (const shard of index.shards as { records: string }[]) {
  for (const line of readFileSync(join(values.data, shard.records), "utf8").split("\n")) {
    if (!line.trim()) continue;
    const record = JSON.parse(line) as { id: string; seed: number; scene: Scene };
    // Streams apart from the export's own (its captions and request use 2 and 3).
    const texts = Array.from({ length: per }, (_, k) =>
      requestFor(record.scene, createRng(deriveSeed(record.seed, 10 + k))),
    );
    const photoRng = createRng(deriveSeed(record.seed, 9));
    const photo = requestFor(record.scene, photoRng, PHOTO);
    texts.push(withoutColors(texts[0]!), photoRng.chance(0.3) ? withoutColors(photo) : photo);
    lines.push(JSON.stringify({ id: record.id, texts }));
  }
}
writeFileSync(join(values.data, "requests.jsonl"), `${lines.join("\n")}\n`);
console.log(`${lines.length} records → ${join(values.data, "requests.jsonl")} (${per + 2} texts each)`);
