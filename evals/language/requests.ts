/**
 * Chat requests for a scene, in varied phrasing, from two disjoint template families: `train` (the
 * planner's training corpus) and `heldout` (the planner's held-out accuracy test and the eval prompt sets).
 *
 * What is shared and what is not: the content words (colour, shape, size, position, relation, style,
 * lighting and background words, with their synonyms) are the same in both families, since a planner
 * cannot know a word it never saw; the sentence frames around them (openers, list joiners, position,
 * relation, background, style and lighting frames) are disjoint, so held-out requests test phrasing never
 * seen in training.
 *
 * Attributes a request leaves out take the defaults in REQUEST_DEFAULTS (a planner must fill them in);
 * every other attribute is always stated, so a request determines its scene exactly. Groups are mentioned
 * in `scene.objects` order, which is the plan's numbering.
 */
import type { Rng } from "../rng.ts";
import type { Background, Lighting, ObjectGroup, Position, Relation, Scene, Size, Style } from "../scene.ts";
import { referringPhrase } from "./refs.ts";
import { article, numberWord, shapeWord } from "./words.ts";

export const FAMILIES = ["train", "heldout"] as const;
export type Family = (typeof FAMILIES)[number];

/**
 * What an unstated attribute means. Colour, shape and count are always stated. An unsized object is large:
 * the embedded denoiser renders the finer shapes (star, cross, diamond) recognisably at that size, and the
 * planner's grounded decoding fills these values in (README, "The shapes world").
 */
export const REQUEST_DEFAULTS = {
  size: "large",
  placement: { kind: "free" },
  background: "white",
  style: "flat",
  lighting: "daylight",
} as const satisfies {
  size: Size;
  placement: ObjectGroup["placement"];
  background: Background;
  style: Style;
  lighting: Lighting;
};

// ---- content words, shared by both families ----

export const SIZE_WORDS: Record<Size, string[]> = {
  small: ["small", "tiny", "little"],
  medium: ["medium", "medium-sized", "mid-sized"],
  large: ["large", "big", "huge"],
};
export const POSITION_WORDS: Record<Position, string[]> = {
  top_left: ["top left", "upper left", "top-left corner", "top left corner"],
  top: ["top", "top middle", "upper middle"],
  top_right: ["top right", "upper right", "top-right corner", "top right corner"],
  left: ["left", "left side", "middle left"],
  center: ["center", "middle", "centre"],
  right: ["right", "right side", "middle right"],
  bottom_left: ["bottom left", "lower left", "bottom-left corner", "bottom left corner"],
  bottom: ["bottom", "bottom middle", "lower middle"],
  bottom_right: ["bottom right", "lower right", "bottom-right corner", "bottom right corner"],
};
export const RELATION_WORDS: Record<Relation, string[]> = {
  left_of: ["left of", "to the left of", "on the left side of"],
  right_of: ["right of", "to the right of", "on the right side of"],
  above: ["above", "over", "higher than"],
  below: ["below", "under", "beneath", "lower than"],
};
export const STYLE_WORDS: Record<Style, string[]> = {
  flat: ["flat", "flat-color", "solid-color"],
  outline: ["outline", "line art", "outlined"],
  watercolor: ["watercolor", "watercolour", "painted"],
};
export const STYLE_NOUNS: Record<Style, string[]> = {
  flat: ["flat illustration", "flat graphic"],
  outline: ["line drawing", "outline drawing"],
  watercolor: ["watercolor painting", "watercolour painting"],
};
export const LIGHTING_NOUNS: Record<Lighting, string[]> = {
  daylight: ["daylight", "bright daylight", "natural light"],
  dim: ["dim light", "dark lighting", "low light"],
  warm: ["warm light", "golden light", "sunset light"],
};
export const LIGHTING_ADJECTIVES: Record<Lighting, string[]> = {
  daylight: ["bright", "natural", "daylight"],
  dim: ["dim", "dark", "low"],
  warm: ["warm", "golden", "sunset"],
};
export const BACKGROUND_WORDS: Record<Background, string[]> = {
  white: ["white"],
  black: ["black"],
  gray: ["gray", "grey"],
  sky: ["sky", "sky gradient"],
};

// ---- sentence frames, one set per family ----

/**
 * Slots: {x} the whole description; {p} a position phrase; {r} a relation phrase; {ref} a referring
 * expression; {bg} a background word; {s} a style word; {sn} a style noun; {L} a lighting noun; {l} a
 * lighting adjective. Frames starting with ". " are sentences appended after the request.
 */
export interface RequestFrames {
  openers: string[];
  /** Joins the last item of a list of object descriptions. */
  lastJoin: string[];
  position: string[];
  relation: string[];
  /** A relation stated after the list, for relations to a group mentioned later. */
  lateRelation: string[];
  background: string[];
  style: string[];
  lighting: string[];
}

export const REQUEST_FRAMES: Record<Family, RequestFrames> = {
  train: {
    openers: [
      "draw {x}",
      "paint {x}",
      "make {x}",
      "create an image of {x}",
      "generate a picture of {x}",
      "please draw {x}",
      "please make {x}",
      "could you paint {x}?",
      "can you make {x}?",
      "can you draw me {x}?",
      "i want {x}",
      "i need a picture with {x}",
      "{x}",
      "{x}, please",
      "picture of {x}",
      "make an image: {x}",
      "would you create {x} for me?",
      "draw me {x}",
      "hi! i'm making a poster and need an image with {x}. thanks a lot",
      "hello, could you please generate an image showing {x}? it's for a presentation",
    ],
    lastJoin: [" and ", ", and "],
    position: ["at the {p}", "in the {p}", "{p}"],
    relation: ["{r} {ref}"],
    lateRelation: [", with {ref} {r} {ref2}", ". put {ref} {r} {ref2}"],
    background: [
      ", on a {bg} background",
      ", with a {bg} background",
      " on {bg}",
      ". the background should be {bg}",
    ],
    style: [", in {s} style", ", as a {sn}", ". make it {s}", ", {s}"],
    lighting: [", in {L}", ", with {L}", ", lit by {L}", ". the lighting should be {l}"],
  },
  heldout: {
    openers: [
      "show me {x}",
      "render {x}",
      "sketch {x}",
      "produce an image showing {x}",
      "kindly render {x}",
      "would it be possible to show me {x}?",
      "how about {x}?",
      "i'd like to see {x}",
      "just {x}",
      "{x}!",
      "image: {x}",
      "give me {x}",
      "an illustration with {x}, if you can",
      "i'm after {x}",
      "hello there, for my kid's storybook i need a scene with {x}; thank you so much",
      "quick one: {x}",
    ],
    lastJoin: [" plus ", " as well as ", " together with "],
    position: ["positioned at the {p}", "sitting in the {p}", "placed in the {p}"],
    relation: ["placed {r} {ref}", "sitting {r} {ref}"],
    lateRelation: ["; {ref} goes {r} {ref2}", ", where {ref} sits {r} {ref2}"],
    background: [" against a {bg} backdrop", "; backdrop: {bg}", ", set on plain {bg}"],
    style: ["; style: {s}", ", done as a {sn}", ", rendered in a {s} look"],
    lighting: [", bathed in {L}", "; lighting: {l}", ", using {L}"],
  },
};

const SOMEWHERE = ["anywhere", "somewhere"];

function fill(template: string, slots: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = slots[name];
    if (value === undefined) throw new Error(`template slot {${name}} unfilled in "${template}"`);
    return value;
  });
}

/** "a small red circle", "three big blue crosses", "2 red stars"; size left out (50%) when medium. */
export function objectPhrase(group: ObjectGroup, rng: Rng): string {
  const size =
    group.size === REQUEST_DEFAULTS.size && rng.chance(0.5) ? "" : rng.pick(SIZE_WORDS[group.size]);
  const words = [size, group.color, shapeWord(group.shape, group.count)].filter(Boolean);
  let head: string;
  if (group.count === 1) head = rng.chance(0.15) ? "one" : article(words[0]!);
  else head = rng.chance(0.15) ? String(group.count) : numberWord(group.count);
  return `${head} ${words.join(" ")}`;
}

export function joinWith(items: string[], last: string): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")}${last}${items.at(-1)}`;
}

export function positionPhrase(position: Position, frames: RequestFrames, rng: Rng): string {
  return fill(rng.pick(frames.position), { p: rng.pick(POSITION_WORDS[position]) });
}

/** The objects, in scene order, with their placements; relations to later groups come back as late clauses. */
function describeObjects(scene: Scene, frames: RequestFrames, rng: Rng): { list: string; late: string[] } {
  const late: string[] = [];
  const items = scene.objects.map((group, index) => {
    const phrase = objectPhrase(group, rng);
    const placement = group.placement;
    if (placement.kind === "grid") return `${phrase} ${positionPhrase(placement.position, frames, rng)}`;
    if (placement.kind === "relation") {
      const r = rng.pick(RELATION_WORDS[placement.relation]);
      if (placement.of < index) {
        const ref =
          placement.of === index - 1 && rng.chance(0.3) ? "it" : referringPhrase(scene, placement.of);
        return `${phrase} ${fill(rng.pick(frames.relation), { r, ref })}`;
      }
      late.push(
        fill(rng.pick(frames.lateRelation), {
          ref: referringPhrase(scene, index),
          r,
          ref2: referringPhrase(scene, placement.of),
        }),
      );
      return phrase;
    }
    return rng.chance(0.1) ? `${phrase} ${rng.pick(SOMEWHERE)}` : phrase;
  });
  return { list: joinWith(items, rng.pick(frames.lastJoin)), late };
}

/** The background, style and lighting clauses: defaults are left out half the time, the rest always stated. */
function sceneClauses(scene: Scene, frames: RequestFrames, rng: Rng): string[] {
  const clauses: string[] = [];
  if (scene.background !== REQUEST_DEFAULTS.background || rng.chance(0.5)) {
    clauses.push(fill(rng.pick(frames.background), { bg: rng.pick(BACKGROUND_WORDS[scene.background]) }));
  }
  if (scene.style !== REQUEST_DEFAULTS.style || rng.chance(0.5)) {
    clauses.push(
      fill(rng.pick(frames.style), {
        s: rng.pick(STYLE_WORDS[scene.style]),
        sn: rng.pick(STYLE_NOUNS[scene.style]),
      }),
    );
  }
  if (scene.lighting !== REQUEST_DEFAULTS.lighting || rng.chance(0.5)) {
    clauses.push(
      fill(rng.pick(frames.lighting), {
        L: rng.pick(LIGHTING_NOUNS[scene.lighting]),
        l: rng.pick(LIGHTING_ADJECTIVES[scene.lighting]),
      }),
    );
  }
  return rng.shuffle(clauses);
}

/** A chat request that determines `scene` exactly (given REQUEST_DEFAULTS), phrased from `family`'s frames (or these frames). */
export function requestFor(scene: Scene, rng: Rng, family: Family | RequestFrames = "train"): string {
  const frames = typeof family === "string" ? REQUEST_FRAMES[family] : family;
  const { list, late } = describeObjects(scene, frames, rng);
  const clauses = [...late, ...sceneClauses(scene, frames, rng)];
  const inline = clauses.filter((c) => !c.startsWith(". ")).join("");
  const sentences = clauses.filter((c) => c.startsWith(". ")).join("");
  return finish(fill(rng.pick(frames.openers), { x: list + inline }), sentences);
}

/** Appends ". sentence" clauses after a request that may already end in punctuation; fixes "a" before vowels. */
export function finish(text: string, sentences: string): string {
  const joined = sentences && /[?!.]$/.test(text) ? `${text} ${sentences.slice(2)}` : text + sentences;
  return joined.replace(/\ba (?=[aeiou])/g, "an ");
}
