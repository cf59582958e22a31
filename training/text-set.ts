/**
 * The native text encoder's tuning set (training/text_encoder.py): a dataset in the world export's format whose
 * records also carry `texts`, what people write for the image, in train phrasing.
 *
 * - Most images come with chat requests, which leave out what REQUEST_DEFAULTS supplies (an unsized object
 *   is large, an unstated background white: the planner's reading), and with two of their captions, so that
 *   the planner's captions (plan-text mode) keep meaning what they meant. Colour has no request default, but an
 *   encoder that maps "a circle" to the average of all colours conditions the denoiser towards a grey blob;
 *   so each shape gets its own (UNSTATED_COLOR), taught by a request with those colour words taken out (only
 *   where a group has its shape's colour, so the text stays true). A GenEval-like "a photo of …" in the same
 *   words keeps the caption form people and benchmarks write. Short prompts of the objects alone ("three
 *   circles") are common and a scene with the default background, style and lighting is rare, so `--bare` of
 *   these images get those defaults and two such requests more.
 * - The rest (`--edits`) show the last scene of an edit dialogue (two or three turns) and carry its turns joined
 *   by ". ", as the native generator reads a dialogue: the encoder has to apply the edits to the opening request.
 *
 * DIR/content-words.json lists the world's attribute words (shapes, colours, counts, sizes, places, styles, …) in
 * both phrasing families: the tune reads every other word as one a prompt may replace by words it never saw.
 *
 *   npx tsx training/text-set.ts --n 60000 --seed 1 --out data/text-train
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { exportDataset, sceneItem } from "../evals/dataset.ts";
import { editDialogue } from "../evals/language/edits.ts";
import {
  BACKGROUND_WORDS,
  LIGHTING_ADJECTIVES,
  LIGHTING_NOUNS,
  POSITION_WORDS,
  RELATION_WORDS,
  REQUEST_DEFAULTS,
  REQUEST_FRAMES,
  type RequestFrames,
  requestFor,
  SIZE_WORDS,
  STYLE_NOUNS,
  STYLE_WORDS,
} from "../evals/language/requests.ts";
import { NUMBER_WORDS, plural } from "../evals/language/words.ts";
import { createRng, deriveSeed } from "../evals/rng.ts";
import { isHeldOut, sampleScene } from "../evals/sample.ts";
import { COLORS, type Color, type Scene, SHAPES, type Shape } from "../evals/scene.ts";

const { values } = parseArgs({
  options: {
    n: { type: "string" },
    seed: { type: "string", default: "1" },
    out: { type: "string" },
    edits: { type: "string", default: "0.3" },
    "own-colors": { type: "string", default: "0.3" },
    bare: { type: "string", default: "0.4" },
  },
  strict: true,
});
if (!values.out || !values.n) throw new Error("--n N and --out DIR are required");
const editShare = Number(values.edits);
const ownColorShare = Number(values["own-colors"]);
const bareShare = Number(values.bare);
for (const [name, share] of [
  ["edits", editShare],
  ["own-colors", ownColorShare],
  ["bare", bareShare],
] as const) {
  if (!(share >= 0 && share <= 1)) throw new Error(`--${name} must be a share in [0, 1], got ${share}`);
}

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
/** The objects alone ("three circles", "draw a star and a cross"): true of a scene whose background, style and
 * lighting are REQUEST_DEFAULTS'. */
const BARE: RequestFrames = {
  ...REQUEST_FRAMES.train,
  openers: [...REQUEST_FRAMES.train.openers, ...PHOTO.openers, "{x}", "{x}"],
  background: [""],
  style: [""],
  lighting: [""],
};

const seed = Number(values.seed);
const index = exportDataset({
  split: "train",
  n: Number(values.n),
  seed,
  out: values.out,
  item: (i) => {
    const rng = createRng(deriveSeed(seed, i, 7));
    const opening = sampleScene(rng, { split: "train" });
    const id = `text-${seed}-${String(i).padStart(7, "0")}`;
    if (rng.chance(editShare)) {
      const turns = editDialogue(opening, rng, 2 + rng.int(2), { reject: (s) => isHeldOut(s).length > 0 });
      const item = sceneItem(turns.at(-1)!.scene, deriveSeed(seed, i, 1), id);
      item.record.texts = [turns.map((turn) => turn.request).join(". ")];
      return item;
    }
    // Prompts without any colour word ("a circle and a square") are common; a scene whose groups all have
    // their shapes' own colours is not, so some scenes of distinct shapes are recoloured that way. Prompts of
    // objects alone are common too, and a scene with the default background, style and lighting is not.
    const shapes = new Set(opening.objects.map((group) => group.shape));
    const ownColors = shapes.size === opening.objects.length && rng.chance(ownColorShare);
    const bare = bareShare > 0 && rng.chance(bareShare);
    const scene: Scene = {
      ...opening,
      objects: ownColors
        ? opening.objects.map((g) => ({ ...g, color: UNSTATED_COLOR[g.shape] }))
        : opening.objects,
      ...(bare
        ? {
            background: REQUEST_DEFAULTS.background,
            style: REQUEST_DEFAULTS.style,
            lighting: REQUEST_DEFAULTS.lighting,
          }
        : {}),
    };
    const item = sceneItem(scene, deriveSeed(seed, i, 1), id);
    const [request, other, photo] = [
      requestFor(scene, rng),
      requestFor(scene, rng),
      requestFor(scene, rng, PHOTO),
    ];
    item.record.texts = [
      ...item.record.captions.slice(0, 2),
      request,
      ownColors ? withoutOwnColors(other) : other,
      withoutOwnColors(request),
      ownColors || rng.chance(0.5) ? withoutOwnColors(photo) : photo,
    ];
    if (bare) {
      const objects = requestFor(scene, rng, BARE);
      item.record.texts.push(objects, ownColors ? withoutOwnColors(objects) : objects);
    }
    return item;
  },
  onShard: (_, done) => console.log(`${done} items`),
});
console.log(`${index.n} items → ${values.out}`);
const phrases = [
  ...SHAPES.flatMap((shape) => [shape, plural(shape)]),
  ...COLORS,
  ...NUMBER_WORDS,
  ...NUMBER_WORDS.map((_, i) => String(i + 1)),
  ...[
    SIZE_WORDS,
    POSITION_WORDS,
    RELATION_WORDS,
    STYLE_WORDS,
    STYLE_NOUNS,
    LIGHTING_NOUNS,
    LIGHTING_ADJECTIVES,
    BACKGROUND_WORDS,
  ].flatMap((table) => Object.values(table).flat()),
];
// The glue of phrases like "to the left of" and "higher than" is no attribute.
const GLUE = new Set(["the", "of", "to", "on", "than"]);
const contentWords = [...new Set(phrases.flatMap((phrase) => phrase.split(/[\s-]+/)))].filter(
  (w) => !GLUE.has(w),
);
writeFileSync(join(values.out, "content-words.json"), `${JSON.stringify(contentWords.sort())}\n`);
