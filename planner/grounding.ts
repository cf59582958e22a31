/**
 * Grounded decoding: the plan may only say what the conversation gives evidence for. A small planner
 * trained from scratch reads unfamiliar phrasing badly and then fills the gap from its prior: a style
 * nobody asked for, a third group after two were requested, a colour from a neighbouring group. Those
 * values have no support in the text, so the decoder excludes them (lexically constrained decoding),
 * while every choice the text does support (which colour goes with which group, what relates to what)
 * stays the model's.
 *
 * Evidence per slot is the union of the words of the shapes world's vocabulary found in the user and
 * critique turns (synonyms included), the values of earlier plans, and the request defaults (an unstated
 * size, style, background, lighting or placement takes its default). For a first request the number of
 * groups is the number of object mentions that start with an article or a number ("a small red circle",
 * "three stars"); an edit may add as many groups as its turn mentions.
 */
import { parsePlan } from "../evals/language/plan.ts";
import type { GroupRestriction, PlanRestrictions } from "../evals/language/plan-grammar.ts";
import {
  BACKGROUND_WORDS,
  LIGHTING_ADJECTIVES,
  LIGHTING_NOUNS,
  REQUEST_DEFAULTS,
  SIZE_WORDS,
  STYLE_NOUNS,
  STYLE_WORDS,
} from "../evals/language/requests.ts";
import { NUMBER_WORDS, plural } from "../evals/language/words.ts";
import {
  type Background,
  COLORS,
  type Color,
  type Lighting,
  MAX_COUNT,
  MAX_GROUPS,
  type Scene,
  SHAPES,
  type Shape,
  SIZES,
  type Size,
  type Style,
} from "../evals/scene.ts";
import type { ChatMessage } from "./planner.ts";

/** Words that start a layout item in the plan, and the request words that are evidence for each. */
const PLACE_WORDS: Record<string, string[]> = {
  top: ["top", "upper"],
  bottom: ["bottom", "lower"],
  left: ["left"],
  right: ["right"],
  center: ["center", "centre", "middle"],
  above: ["above", "over", "higher"],
  below: ["below", "under", "beneath", "lower"],
};

const DETERMINERS = new Set([
  "a",
  "an",
  ...NUMBER_WORDS,
  ...Array.from({ length: 9 }, (_, i) => String(i + 1)),
]);
const SHAPE_BY_WORD = new Map<string, Shape>(
  SHAPES.flatMap((s) => [[s, s] as const, [plural(s), s] as const]),
);
/** Words an object mention may hold between its determiner and its shape ("a mid-sized purple cross"). */
const MAX_MODIFIERS = 3;

/** Lower-case words; hyphenated words stay whole ("mid-sized"), digits are words. */
function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+(?:-[a-z]+)*|\d+/g) ?? [];
}

/** Whether `phrase` (one or more words) occurs in `text` as whole words. */
function mentions(text: string, phrase: string): boolean {
  const escaped = phrase.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^a-z])${escaped}([^a-z]|$)`).test(text);
}

function found<T extends string>(text: string, table: Record<T, string[]>): T[] {
  return (Object.keys(table) as T[]).filter((key) => table[key].some((phrase) => mentions(text, phrase)));
}

/** An object mention of a request: what it states about its group. */
export interface ObjectMention {
  shape: Shape;
  /** Unset when the determiner and the noun disagree ("a pair of circles"). */
  count?: number;
  size?: Size;
  color?: Color;
}

const SIZE_BY_WORD = new Map<string, Size>(
  (Object.entries(SIZE_WORDS) as [Size, string[]][]).flatMap(([size, list]) =>
    list.map((w) => [w, size] as const),
  ),
);
const COLOR_WORDS = new Set<string>(COLORS);

function determinerCount(word: string): number {
  if (word === "a" || word === "an") return 1;
  const index = (NUMBER_WORDS as readonly string[]).indexOf(word);
  return index >= 0 ? index + 1 : Number(word);
}

/**
 * Object mentions introduced by an article or a number, in order ("a small red circle", "three stars"):
 * in a request each is one group, numbered in mention order. "the circle" refers back and is not one.
 */
export function objectMentions(text: string): ObjectMention[] {
  const found: ObjectMention[] = [];
  let open: { count: number; between: string[] } | null = null;
  for (const word of words(text)) {
    if (DETERMINERS.has(word)) open = { count: determinerCount(word), between: [] };
    else if (SHAPE_BY_WORD.has(word)) {
      if (open && open.between.length <= MAX_MODIFIERS) {
        const shape = SHAPE_BY_WORD.get(word)!;
        const isPlural = word !== shape;
        const mention: ObjectMention = { shape };
        if (isPlural === open.count > 1) mention.count = open.count;
        const size = open.between.find((w) => SIZE_BY_WORD.has(w));
        if (size) mention.size = SIZE_BY_WORD.get(size);
        const color = open.between.find((w) => COLOR_WORDS.has(w));
        if (color) mention.color = color as Color;
        found.push(mention);
      }
      open = null;
    } else if (open) open.between.push(word);
  }
  return found;
}

const union = <T>(...parts: Iterable<T>[]): Set<T> => new Set(parts.flatMap((p) => [...p]));

/** The restrictions the conversation supports (see the module comment). */
export function groundingFor(messages: readonly ChatMessage[]): PlanRestrictions {
  const spoken = messages.filter((m) => m.role !== "assistant");
  const text = spoken.map((m) => m.content.toLowerCase()).join(" \n ");
  // Hyphenated words count whole ("mid-sized") and by their parts ("top-left" says top and left).
  const said = new Set(words(text).flatMap((w) => [w, ...w.split("-")]));
  const plans: Scene[] = [];
  for (const m of messages) {
    if (m.role !== "assistant") continue;
    try {
      plans.push(parsePlan(m.content));
    } catch {
      // an assistant turn that is not a plan (a reply in words) gives no evidence
    }
  }
  const earlier = plans.flatMap((scene) => scene.objects);
  const isEdit = plans.length > 0;

  const counts = new Set<number>([1]);
  NUMBER_WORDS.forEach((word, i) => {
    if (said.has(word) || said.has(String(i + 1))) counts.add(i + 1);
  });
  const places = new Set<string>(["anywhere"]);
  for (const [place, evidence] of Object.entries(PLACE_WORDS)) {
    if (evidence.some((w) => said.has(w))) places.add(place);
  }
  for (const group of earlier) {
    const p = group.placement;
    if (p.kind === "grid") places.add(p.position.split("_")[0]!);
    if (p.kind === "relation") places.add(p.relation.replace("_of", ""));
  }

  const restrictions: PlanRestrictions = {
    styles: union<Style>(
      [REQUEST_DEFAULTS.style],
      found(text, STYLE_WORDS),
      found(text, STYLE_NOUNS),
      plans.map((s) => s.style),
    ),
    backgrounds: union<Background>(
      [REQUEST_DEFAULTS.background],
      found(text, BACKGROUND_WORDS),
      plans.map((s) => s.background),
    ),
    lightings: union<Lighting>(
      [REQUEST_DEFAULTS.lighting],
      found(text, LIGHTING_NOUNS),
      found(text, LIGHTING_ADJECTIVES),
      plans.map((s) => s.lighting),
    ),
    colors: union<Color>(
      COLORS.filter((c) => said.has(c)),
      earlier.map((g) => g.color),
    ),
    shapes: union<Shape>(
      [...said].flatMap((w) => (SHAPE_BY_WORD.has(w) ? [SHAPE_BY_WORD.get(w)!] : [])),
      earlier.map((g) => g.shape),
    ),
    places,
  };
  // Edits change sizes and counts with verbs ("scale it down", "add another"), not only with size words.
  if (!isEdit) {
    restrictions.sizes = union<Size>([REQUEST_DEFAULTS.size], found(text, SIZE_WORDS));
    restrictions.counts = new Set([...counts].filter((n) => n <= MAX_COUNT));
  } else {
    restrictions.sizes = new Set(SIZES);
  }
  const lastTurn = spoken.at(-1)?.content ?? "";
  if (!isEdit) {
    const mentions = objectMentions(text);
    if (mentions.length > 0 && mentions.length <= MAX_GROUPS) {
      restrictions.groups = { min: mentions.length, max: mentions.length };
      restrictions.perGroup = mentions.map((m) => ({
        shapes: new Set([m.shape]),
        sizes: new Set([m.size ?? REQUEST_DEFAULTS.size]),
        ...(m.count === undefined ? {} : { counts: new Set([m.count]) }),
        ...(m.color === undefined ? {} : { colors: new Set([m.color]) }),
      }));
    }
    return restrictions;
  }
  Object.assign(restrictions, editGrounding(plans.at(-1)!, lastTurn));
  return restrictions;
}

/** Pronouns that may refer to any group ("make it blue", "move them to the left"). */
const PRONOUNS = new Set(["it", "them", "they", "both"]);

/**
 * The groups of `scene` a turn may refer to. A definite reference ("the red circle", "the stars", "the red
 * one") selects the groups that match what it states; "the left one", a pronoun or a reference that
 * matches nothing may mean any group. Without definite references, a group whose shape or colour the turn
 * says may be meant.
 */
function referableGroups(scene: Scene, turn: string): boolean[] {
  const all = scene.objects.map(() => true);
  const list = words(turn);
  if (list.some((w) => PRONOUNS.has(w))) return all;
  const meant = scene.objects.map(() => false);
  let definite = false;
  for (let i = 0; i < list.length; i++) {
    if (list[i] !== "the") continue;
    const modifiers: string[] = [];
    for (let j = i + 1; j < list.length && j <= i + 3; j++) {
      const word = list[j]!;
      const isHead = SHAPE_BY_WORD.has(word) || word === "one" || word === "ones";
      if (!isHead) {
        modifiers.push(word);
        continue;
      }
      definite = true;
      const shape = SHAPE_BY_WORD.get(word);
      const color = modifiers.find((m) => COLOR_WORDS.has(m));
      if (!shape && !color) return all; // "the left one", "the big one"
      const matches = scene.objects.map(
        (g) => (!shape || g.shape === shape) && (!color || g.color === color),
      );
      if (!matches.includes(true)) return all;
      matches.forEach((m, k) => {
        if (m) meant[k] = true;
      });
      break;
    }
  }
  if (definite) return meant;
  const said = new Set(list);
  return scene.objects.map(
    (g) => said.has(g.color) || [...said].some((w) => SHAPE_BY_WORD.get(w) === g.shape),
  );
}

/**
 * An edit changes only what it must: a group the turn does not refer to keeps its count, size, shape and
 * colour. A removal of a referred group shifts the groups after it down by one, so from the first referred
 * group on, group k may also take the values of the earlier plan's group k + 1. New groups come from the
 * turn's object mentions.
 */
function editGrounding(previous: Scene, turn: string): Pick<PlanRestrictions, "groups" | "perGroup"> {
  const groups = previous.objects;
  const added = objectMentions(turn).length;
  const referable = referableGroups(previous, turn);
  const first = referable.indexOf(true);
  const max = Math.min(MAX_GROUPS, groups.length + added);
  if (first < 0) return { groups: { min: groups.length, max }, perGroup: groups.map((g) => keep([g])) };
  const perGroup = groups.map((g, k) => {
    const sources = k >= first && groups[k + 1] ? [g, groups[k + 1]!] : [g];
    return sources.some((_, i) => referable[k + i]) ? {} : keep(sources);
  });
  return { groups: { min: Math.max(1, groups.length - 1), max }, perGroup };
}

function keep(sources: Scene["objects"]): GroupRestriction {
  return {
    counts: new Set(sources.map((g) => g.count)),
    sizes: new Set(sources.map((g) => g.size)),
    shapes: new Set(sources.map((g) => g.shape)),
    colors: new Set(sources.map((g) => g.color)),
  };
}
