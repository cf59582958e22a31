/**
 * More chat requests for every image of an exported dataset, for tuning the native text encoder
 * (`training/ldm.py --config text`): people's prompts leave attributes out, and a request (train phrasing)
 * leaves out only what REQUEST_DEFAULTS supplies, so an image paired with it teaches the encoder that an
 * unsized object is large and an unstated background white — the meaning the planner gives them. Colour has
 * no request default, but an encoder that maps "a circle" to the average of all colours conditions the denoiser
 * towards a grey blob; so each shape gets its own (UNSTATED_COLOR), and a request with those colour words taken
 * out — only where a group has its shape's colour, so the text stays true — teaches it. A GenEval-like
 * "a photo of …" in the same words keeps the caption form people and benchmarks write.
 *
 * Writes DIR/requests.jsonl: one line per record, {"id", "texts": [PER requests, the first again without its shapes'
 * own colours, "a photo of …" (half the time without them)]}.
 *
 *   npx tsx training/request-texts.ts --data data/train-r --per 3
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readDatasetRecords } from "../evals/dataset.ts";
import { REQUEST_FRAMES, type RequestFrames, requestFor } from "../evals/language/requests.ts";
import { createRng, deriveSeed } from "../evals/rng.ts";
import type { Color, Shape } from "../evals/scene.ts";

const { values } = parseArgs({
  options: { data: { type: "string" }, per: { type: "string", default: "3" } },
  strict: true,
});
if (!values.data) throw new Error("--data DIR is required (a folder written by `atelier world export`)");
const per = Number(values.per);
if (!Number.isInteger(per) || per < 1) throw new Error(`--per must be an integer ≥ 1, got ${values.per}`);

/** The colour the native text encoder learns for an object whose colour a prompt leaves out (no yellow: it is
 * the faintest on the default white background). */
const UNSTATED_COLOR: Record<Shape, Color> = {
  circle: "red",
  square: "blue",
  triangle: "green",
  star: "orange",
  diamond: "purple",
  cross: "pink",
};
const OWN_COLOR_WORDS = Object.entries(UNSTATED_COLOR).map(
  ([shape, color]) =>
    new RegExp(`\\b${color} (?=${shape === "cross" ? "cross(es)?" : `${shape}s?`}\\b)`, "g"),
);
const withoutOwnColors = (text: string) =>
  OWN_COLOR_WORDS.reduce((t, word) => t.replace(word, ""), text).replace(/\ban (?=[^aeiou])/g, "a ");
const PHOTO: RequestFrames = {
  ...REQUEST_FRAMES.train,
  openers: ["a photo of {x}", "a picture of {x}", "an image of {x}"],
};
const lines = readDatasetRecords(values.data).map((record) => {
  // Streams apart from the export's own (its captions and request use 2 and 3).
  const texts = Array.from({ length: per }, (_, k) =>
    requestFor(record.scene, createRng(deriveSeed(record.seed, 10 + k))),
  );
  const photoRng = createRng(deriveSeed(record.seed, 9));
  const photo = requestFor(record.scene, photoRng, PHOTO);
  texts.push(withoutOwnColors(texts[0]!), photoRng.chance(0.5) ? withoutOwnColors(photo) : photo);
  return JSON.stringify({ id: record.id, texts });
});
writeFileSync(join(values.data, "requests.jsonl"), `${lines.join("\n")}\n`);
console.log(`${lines.length} records → ${join(values.data, "requests.jsonl")} (${per + 2} texts each)`);
