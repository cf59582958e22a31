/**
 * Writes the eval prompt sets (deterministic): `npx tsx evals/language/make-prompts.ts [--out evals/prompts]
 * [--seed 1000]`.
 *
 * shapes-geneval.jsonl: ≥ 400 prompts over every category, GenEval-style ("a photograph of two red
 * circles"). Their frames are disjoint from every training text: not the captions' "a photo of …", not the
 * `train` request frames; chat-style prompts and edits use the `heldout` frames. Prompts that use a held-out
 * composition (evals/sample.ts) carry `"heldout": true`.
 * shapes-smoke.jsonl: the first five prompts of each category, for quick runs.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { createRng, type Rng } from "../rng.ts";
import { HELD_OUT_COLOR_SHAPES, HELD_OUT_RELATIONS, isHeldOut, sampleScene } from "../sample.ts";
import {
  BACKGROUNDS,
  COLORS,
  type Color,
  LIGHTINGS,
  POSITIONS,
  RELATIONS,
  type Relation,
  type Scene,
  SHAPES,
  type Shape,
  SIZES,
  STYLES,
} from "../scene.ts";
import { applyEdit, type Edit, type EditKind, editText, isUsableScene, proposeEdit } from "./edits.ts";
import { type EvalPrompt, PROMPT_CATEGORIES, PromptSchema } from "./prompt-file.ts";
import {
  BACKGROUND_WORDS,
  finish,
  LIGHTING_ADJECTIVES,
  LIGHTING_NOUNS,
  POSITION_WORDS,
  RELATION_WORDS,
  REQUEST_FRAMES,
  requestFor,
  STYLE_NOUNS,
  STYLE_WORDS,
} from "./requests.ts";
import { article, numberWord, plural } from "./words.ts";

/** GenEval's "a photo of {x}", reworded so that no training text uses the frame. */
const PHOTO_FRAMES = [
  "a photograph of {x}",
  "an image showing {x}",
  "a rendering of {x}",
  "a snapshot of {x}",
  "an image with {x}",
];

const HELD = REQUEST_FRAMES.heldout;

function fill(template: string, slots: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => slots[name] ?? `{${name}}`);
}

const withArticle = (words: string) => `${article(words)} ${words}`;
const nounPhrase = (shape: Shape, count: number, ...adjectives: (string | undefined)[]) => {
  const words = [...adjectives.filter(Boolean), count === 1 ? shape : plural(shape)].join(" ");
  return count === 1 ? withArticle(words) : `${numberWord(count)} ${words}`;
};

function heldOutPair(color: Color, shape: Shape): boolean {
  return HELD_OUT_COLOR_SHAPES.some((p) => p.color === color && p.shape === shape);
}

function heldOutRelation(a: Shape, relation: Relation, b: Shape): boolean {
  const inverse = { left_of: "right_of", right_of: "left_of", above: "below", below: "above" } as const;
  return HELD_OUT_RELATIONS.some(
    (h) =>
      (h.a === a && h.relation === relation && h.b === b) ||
      (h.a === b && h.relation === inverse[relation] && h.b === a),
  );
}

type Draft = Omit<EvalPrompt, "id" | "category">;

function photo(rng: Rng, x: string): string {
  return finish(fill(rng.pick(PHOTO_FRAMES), { x }), "");
}

/** A chat-style prompt in the held-out request frames. */
function chat(rng: Rng, x: string): string {
  return finish(fill(rng.pick(HELD.openers), { x }), "");
}

function singleObject(rng: Rng): Draft[] {
  return SHAPES.flatMap((shape) =>
    Array.from({ length: 8 }, (_, k) => {
      const size = k % 2 === 1 ? SIZES[(k >> 1) % SIZES.length]! : undefined;
      const x = nounPhrase(shape, 1, size);
      const prompt = k < 6 ? photo(rng, x) : chat(rng, x);
      return { prompt, expect: { objects: [{ shape, ...(size && { size }) }] } };
    }),
  );
}

function twoObjects(rng: Rng): Draft[] {
  const drafts: Draft[] = [];
  SHAPES.forEach((a, i) => {
    SHAPES.slice(i + 1).forEach((b) => {
      for (const [first, second] of [
        [a, b],
        [b, a],
      ] as const) {
        const join = rng.pick([" and ", " and ", " plus ", " together with "]);
        drafts.push({
          prompt: photo(rng, `${nounPhrase(first, 1)}${join}${nounPhrase(second, 1)}`),
          expect: { objects: [{ shape: first }, { shape: second }] },
        });
      }
      drafts.push({
        prompt: chat(rng, `${nounPhrase(a, 1)}${rng.pick(HELD.lastJoin)}${nounPhrase(b, 1)}`),
        expect: { objects: [{ shape: a }, { shape: b }] },
      });
    });
  });
  return drafts;
}

function counting(rng: Rng): Draft[] {
  const drafts: Draft[] = [];
  for (const shape of SHAPES) {
    for (const count of [2, 3, 4]) {
      drafts.push({
        prompt: photo(rng, nounPhrase(shape, count)),
        expect: { objects: [{ shape, count }], exact_count: true },
      });
      const color = rng.pick(COLORS);
      drafts.push({
        prompt: photo(rng, nounPhrase(shape, count, color)),
        expect: { objects: [{ shape, color, count }], exact_count: true },
        ...(heldOutPair(color, shape) && { heldout: true }),
      });
      const size = SIZES[(count + SHAPES.indexOf(shape)) % SIZES.length]!;
      drafts.push({
        prompt: chat(rng, nounPhrase(shape, count, size)),
        expect: { objects: [{ shape, size, count }], exact_count: true },
      });
    }
  }
  return drafts;
}

function colors(rng: Rng): Draft[] {
  return SHAPES.flatMap((shape) =>
    COLORS.map((color) => ({
      prompt: photo(rng, nounPhrase(shape, 1, color)),
      expect: { objects: [{ shape, color }] },
      ...(heldOutPair(color, shape) && { heldout: true }),
    })),
  );
}

function position(rng: Rng): Draft[] {
  const drafts: Draft[] = [];
  // Every held-out shape pair + relation in both phrasings, then a cycle over the others.
  const pairs: [Shape, Relation, Shape][] = HELD_OUT_RELATIONS.flatMap((h) => {
    const inverse = { left_of: "right_of", right_of: "left_of", above: "below", below: "above" } as const;
    return [
      [h.a, h.relation, h.b],
      [h.b, inverse[h.relation], h.a],
    ] as [Shape, Relation, Shape][];
  });
  let k = 0;
  while (pairs.length < 40) {
    const a = SHAPES[k % SHAPES.length]!;
    const b = SHAPES[(k + 1 + Math.floor(k / SHAPES.length)) % SHAPES.length]!;
    const relation = RELATIONS[k % RELATIONS.length]!;
    k++;
    if (a === b || heldOutRelation(a, relation, b)) continue;
    pairs.push([a, relation, b]);
  }
  for (const [a, relation, b] of pairs) {
    drafts.push({
      prompt: photo(rng, `${nounPhrase(a, 1)} ${rng.pick(RELATION_WORDS[relation])} ${nounPhrase(b, 1)}`),
      expect: { objects: [{ shape: a }, { shape: b }], relations: [{ a: 0, rel: relation, b: 1 }] },
      ...(heldOutRelation(a, relation, b) && { heldout: true }),
    });
  }
  POSITIONS.forEach((where, i) => {
    for (const shape of [SHAPES[i % SHAPES.length]!, SHAPES[(i + 3) % SHAPES.length]!]) {
      const place = fill(rng.pick(["in the {p}", "at the {p}", "positioned at the {p}"]), {
        p: rng.pick(POSITION_WORDS[where]),
      });
      drafts.push({
        prompt: photo(rng, `${nounPhrase(shape, 1)} ${place}`),
        expect: { objects: [{ shape, position: where }] },
      });
    }
  });
  return drafts;
}

function colorAttr(rng: Rng): Draft[] {
  const drafts: Draft[] = [];
  // Each held-out colour–shape pair twice, next to a seen pair.
  for (const held of [...HELD_OUT_COLOR_SHAPES, ...HELD_OUT_COLOR_SHAPES]) {
    const shape = rng.pick(SHAPES.filter((s) => s !== held.shape));
    const color = rng.pick(COLORS.filter((c) => c !== held.color && !heldOutPair(c, shape)));
    const first = rng.chance(0.5);
    const objects = first ? [held, { color, shape }] : [{ color, shape }, held];
    drafts.push({
      prompt: photo(rng, objects.map((o) => nounPhrase(o.shape, 1, o.color)).join(" and ")),
      expect: { objects: objects.map((o) => ({ shape: o.shape, color: o.color })) },
      heldout: true,
    });
  }
  while (drafts.length < 48) {
    const [a, b] = rng.shuffle(SHAPES).slice(0, 2) as [Shape, Shape];
    const [ca, cb] = rng.shuffle(COLORS).slice(0, 2) as [Color, Color];
    if (heldOutPair(ca, a) || heldOutPair(cb, b)) continue;
    drafts.push({
      prompt: photo(rng, `${nounPhrase(a, 1, ca)} and ${nounPhrase(b, 1, cb)}`),
      expect: {
        objects: [
          { shape: a, color: ca },
          { shape: b, color: cb },
        ],
      },
    });
  }
  return drafts;
}

function styleBackground(rng: Rng): Draft[] {
  const drafts: Draft[] = [];
  for (let i = 0; drafts.length < 54; i++) {
    const style = STYLES[i % STYLES.length]!;
    const background = BACKGROUNDS[Math.floor(i / STYLES.length) % BACKGROUNDS.length]!;
    const lighting = LIGHTINGS[Math.floor(i / 4) % LIGHTINGS.length]!;
    const shape = SHAPES[i % SHAPES.length]!;
    const color = COLORS[(i * 3) % COLORS.length]!;
    const stateLighting = i % 2 === 0;
    const clauses = [
      fill(rng.pick(HELD.background), { bg: rng.pick(BACKGROUND_WORDS[background]) }),
      ...(stateLighting
        ? [
            fill(rng.pick(HELD.lighting), {
              L: rng.pick(LIGHTING_NOUNS[lighting]),
              l: rng.pick(LIGHTING_ADJECTIVES[lighting]),
            }),
          ]
        : []),
    ];
    const head = rng.chance(0.5)
      ? `${withArticle(rng.pick(STYLE_NOUNS[style]))} of ${nounPhrase(shape, 1, color)}`
      : `${nounPhrase(shape, 1, color)}${fill(rng.pick(HELD.style), { s: rng.pick(STYLE_WORDS[style]), sn: rng.pick(STYLE_NOUNS[style]) })}`;
    drafts.push({
      prompt: finish(head + rng.shuffle(clauses).join(""), ""),
      expect: {
        objects: [{ shape, color }],
        background,
        style,
        ...(stateLighting && { lighting }),
      },
      ...(heldOutPair(color, shape) && { heldout: true }),
    });
  }
  return drafts;
}

/** What an edit prompt's last image must show: every group's shape and colour, plus what the edits changed. */
function editExpect(scene: Scene, before: Scene, edits: Edit[]): EvalPrompt["expect"] {
  const objects: EvalPrompt["expect"]["objects"] = scene.objects.map((g) => ({
    shape: g.shape,
    color: g.color,
    ...(g.count > 1 && { count: g.count }),
    ...(g.placement.kind === "grid" && { position: g.placement.position }),
  }));
  const expect: EvalPrompt["expect"] = { objects };
  const relations: NonNullable<EvalPrompt["expect"]["relations"]> = [];
  scene.objects.forEach((g, i) => {
    if (g.placement.kind === "relation")
      relations.push({ a: i, rel: g.placement.relation, b: g.placement.of });
  });
  if (relations.length > 0) expect.relations = relations;
  const absent: NonNullable<EvalPrompt["expect"]["absent"]> = [];
  let current = before;
  for (const edit of edits) {
    if (edit.kind === "resize") objects[edit.target]!.size = edit.size;
    if (edit.kind === "recount") objects[edit.target]!.count = edit.count;
    if (edit.kind === "recolor" || edit.kind === "remove") {
      const gone = current.objects[edit.target]!;
      absent.push({ shape: gone.shape, color: gone.color });
    }
    if (edit.kind === "restyle") expect.style = edit.style;
    if (edit.kind === "background") expect.background = edit.background;
    if (edit.kind === "lighting") expect.lighting = edit.lighting;
    current = applyEdit(current, edit);
  }
  const kept = absent.filter((a) => !scene.objects.some((g) => g.shape === a.shape && g.color === a.color));
  if (kept.length > 0) expect.absent = kept;
  if (edits.some((e) => e.kind === "recount")) expect.exact_count = true;
  return expect;
}

const EDIT_CYCLE: EditKind[] = [
  "recolor",
  "add",
  "remove",
  "move",
  "resize",
  "recount",
  "restyle",
  "background",
  "lighting",
];

function edits(rng: Rng): Draft[] {
  const drafts: Draft[] = [];
  while (drafts.length < 66) {
    const scene = sampleScene(rng);
    if (scene.objects.length > 2 || scene.objects.some((g) => g.count > 3)) continue;
    const kinds = [EDIT_CYCLE[drafts.length % EDIT_CYCLE.length]!];
    if (drafts.length % 4 === 3) kinds.push(rng.pick(EDIT_CYCLE));
    const turns = [requestFor(scene, rng, "heldout")];
    const applied: Edit[] = [];
    let current = scene;
    let focus: number | null = scene.objects.length === 1 ? 0 : null;
    for (const kind of kinds) {
      const edit = proposeEdit(current, kind, rng);
      if (!edit) break;
      let next: Scene;
      try {
        next = applyEdit(current, edit);
      } catch {
        break;
      }
      if (!isUsableScene(next) || next.objects.some((g) => g.count > 3)) break;
      turns.push(editText(current, edit, focus, "heldout", rng));
      applied.push(edit);
      focus =
        edit.kind === "add"
          ? next.objects.length - 1
          : "target" in edit && edit.kind !== "remove"
            ? edit.target
            : focus;
      current = next;
    }
    if (applied.length !== kinds.length) continue;
    const expect = editExpect(current, scene, applied);
    if (!PromptSchema.safeParse({ id: "x", category: "edit", turns, expect }).success) continue;
    drafts.push({
      turns,
      expect,
      ...((isHeldOut(scene).length > 0 || isHeldOut(current).length > 0) && { heldout: true }),
    });
  }
  return drafts;
}

const MAKERS: Record<(typeof PROMPT_CATEGORIES)[number], (rng: Rng) => Draft[]> = {
  single_object: singleObject,
  two_objects: twoObjects,
  counting,
  colors,
  position,
  color_attr: colorAttr,
  style_background: styleBackground,
  edit: edits,
};

/**
 * Every prompt set, validated; the same output for every run. `seed` 1000 gives the committed sets; another
 * gives fresh prompts of the same kinds, for tuning a setting without tuning it on the eval set.
 */
export function makePrompts(seed = 1000): { main: EvalPrompt[]; smoke: EvalPrompt[] } {
  const main: EvalPrompt[] = [];
  const smoke: EvalPrompt[] = [];
  PROMPT_CATEGORIES.forEach((category, c) => {
    const drafts = MAKERS[category](createRng(seed + c));
    drafts.forEach((draft, i) => {
      const prompt = PromptSchema.parse({
        id: `${category}-${String(i + 1).padStart(3, "0")}`,
        category,
        ...draft,
      });
      main.push(prompt);
      if (i < 5) smoke.push(prompt);
    });
  });
  return { main, smoke };
}

export const PROMPT_FILES = { main: "shapes-geneval.jsonl", smoke: "shapes-smoke.jsonl" } as const;

export function toJsonl(prompts: EvalPrompt[]): string {
  return `${prompts.map((p) => JSON.stringify(p)).join("\n")}\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { values } = parseArgs({
    options: { out: { type: "string", default: "evals/prompts" }, seed: { type: "string", default: "1000" } },
    strict: true,
  });
  const out = values.out!;
  mkdirSync(out, { recursive: true });
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const sets = makePrompts(seed);
  for (const [name, file] of Object.entries(PROMPT_FILES)) {
    const prompts = sets[name as keyof typeof sets];
    writeFileSync(join(out, file), toJsonl(prompts));
    const counts = PROMPT_CATEGORIES.map((c) => `${c} ${prompts.filter((p) => p.category === c).length}`);
    console.log(
      `${join(out, file)}: ${prompts.length} prompts (${prompts.filter((p) => p.heldout).length} held-out): ${counts.join(", ")}`,
    );
  }
}
