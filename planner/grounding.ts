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
  POSITION_WORDS,
  RELATION_WORDS,
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
  type Placement,
  type Position,
  parseScene,
  type Relation,
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

/** Like `words`, plus clause punctuation as tokens of its own (";", ".", "!", "?"). */
function tokens(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+(?:-[a-z]+)*|\d+|[;.!?]/g) ?? [];
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

/** A word of a request with what it is part of (mentions are numbered in order). */
type Mark =
  | { kind: "mention"; index: number }
  | { kind: "reference"; index: number | null }
  | { kind: "position"; position: Position }
  | { kind: "relation"; relation: Relation }
  | { kind: "boundary" };

const PHRASES: { words: string[]; mark: Mark }[] = [
  ...(Object.entries(RELATION_WORDS) as [Relation, string[]][]).flatMap(([relation, list]) =>
    list.map((p) => ({ words: p.split(" "), mark: { kind: "relation", relation } as Mark })),
  ),
  ...(Object.entries(POSITION_WORDS) as [Position, string[]][]).flatMap(([position, list]) =>
    list.map((p) => ({ words: p.split(" "), mark: { kind: "position", position } as Mark })),
  ),
].sort((a, b) => b.words.length - a.words.length);
const ORDINALS = ["first", "second", "third", "fourth"];
/** Words a definite reference may hold before its shape: a colour, a size word, an ordinal. */
const isModifier = (word: string | undefined) =>
  word !== undefined && (COLOR_WORDS.has(word) || SIZE_BY_WORD.has(word) || ORDINALS.includes(word));

/** A definite reference at `i`: "the", up to three modifiers, and a shape word or "one(s)". */
interface DefiniteReference {
  modifiers: string[];
  /** Unset for "the red one(s)". */
  shape?: Shape;
  plural: boolean;
  /** The token after the reference. */
  end: number;
}

function definiteReference(list: readonly string[], i: number): DefiniteReference | null {
  if (list[i] !== "the") return null;
  let j = i + 1;
  while (j <= i + MAX_MODIFIERS && isModifier(list[j])) j++;
  const head = list[j];
  const modifiers = list.slice(i + 1, j);
  if (head === "one" || head === "ones") return { modifiers, plural: head === "ones", end: j + 1 };
  const shape = head === undefined ? undefined : SHAPE_BY_WORD.get(head);
  return shape ? { modifiers, shape, plural: head !== shape, end: j + 1 } : null;
}

/** The mention (or group) a definite reference with a shape ("the red star", "the second circle") picks out. */
function resolveReference(
  mentions: readonly ObjectMention[],
  { modifiers, shape, plural }: DefiniteReference,
): number | null {
  const color = modifiers.find((m) => COLOR_WORDS.has(m));
  const size = modifiers.map((m) => SIZE_BY_WORD.get(m)).find(Boolean);
  const rank = ORDINALS.findIndex((o) => modifiers.includes(o));
  const matches = mentions.flatMap((m, i) =>
    m.shape === shape &&
    (!color || m.color === color) &&
    (!size || (m.size ?? REQUEST_DEFAULTS.size) === size) &&
    (m.count === undefined || m.count > 1 === plural)
      ? [i]
      : [],
  );
  if (rank >= 0) return matches[rank] ?? null;
  return matches.length === 1 ? matches[0]! : null;
}

/**
 * The placement a first request states for each mentioned group: a position phrase belongs to the last
 * object mentioned before it in its clause ("a star at the top left"); a relation phrase relates the last
 * object mentioned or referred to before it to the next one after it ("a star left of a square", "; the
 * square goes above the circle"). Unplaced groups are free. Null when something does not resolve or a
 * group is placed twice: the planner then decides the layout alone.
 */
export function statedPlacements(text: string, mentions: ObjectMention[]): Placement[] | null {
  const list = tokens(text);
  const marks: Mark[] = [];
  let mention = 0;
  let open: number | null = null; // token index of an unresolved determiner
  for (let i = 0; i < list.length; ) {
    const word = list[i]!;
    if (/^[;.!?]$/.test(word)) {
      marks.push({ kind: "boundary" });
      open = null;
      i++;
      continue;
    }
    const phrase = PHRASES.find((p) => p.words.every((w, k) => list[i + k] === w));
    if (phrase) {
      marks.push(phrase.mark);
      i += phrase.words.length;
      continue;
    }
    const reference = definiteReference(list, i);
    if (reference?.shape) {
      marks.push({ kind: "reference", index: resolveReference(mentions, reference) });
      i = reference.end;
      continue;
    }
    if (word === "it") marks.push({ kind: "reference", index: mention - 1 >= 0 ? mention - 1 : null });
    if (DETERMINERS.has(word)) open = i;
    else if (SHAPE_BY_WORD.has(word) && open !== null && i - open - 1 <= MAX_MODIFIERS) {
      marks.push({ kind: "mention", index: mention++ });
      open = null;
    }
    i++;
  }
  if (mention !== mentions.length) return null;

  const placements: (Placement | null)[] = mentions.map(() => null);
  const place = (index: number | null, placement: Placement): boolean => {
    if (index === null || placements[index]) return false;
    placements[index] = placement;
    return true;
  };
  let subject: number | null = null; // the last object mentioned or referred to in the clause
  for (let k = 0; k < marks.length; k++) {
    const mark = marks[k]!;
    if (mark.kind === "boundary") subject = null;
    else if (mark.kind === "mention" || mark.kind === "reference") subject = mark.index;
    else if (mark.kind === "position") {
      if (!place(subject, { kind: "grid", position: mark.position })) return null;
    } else {
      const next = marks[k + 1];
      if (!next || (next.kind !== "mention" && next.kind !== "reference") || next.index === null) return null;
      if (
        next.index === subject ||
        !place(subject, { kind: "relation", relation: mark.relation, of: next.index })
      )
        return null;
    }
  }
  return placements.map((p) => p ?? { kind: "free" });
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
      const placements = statedPlacements(text, mentions);
      restrictions.perGroup = mentions.map((m, k) => ({
        ...(placements ? { placement: placements[k] } : {}),
        shapes: new Set([m.shape]),
        sizes: new Set([m.size ?? REQUEST_DEFAULTS.size]),
        ...(m.count === undefined ? {} : { counts: new Set([m.count]) }),
        ...(m.color === undefined ? {} : { colors: new Set([m.color]) }),
      }));
    }
    return restrictions;
  }
  // A critique lists several differences at once; only a user's edit turn is read as one edit.
  const stated = messages.at(-1)?.role === "user" ? statedEdit(plans.at(-1)!, lastTurn) : null;
  if (stated) {
    restrictions.groups = { min: stated.length, max: stated.length };
    restrictions.perGroup = stated.map((g) => keep([g]));
  } else Object.assign(restrictions, editGrounding(plans.at(-1)!, lastTurn));
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
    // the layout item too, unless a removal may have shifted the group (its sources then differ)
    ...(sources.length === 1 ? { placement: sources[0]!.placement } : {}),
    counts: new Set(sources.map((g) => g.count)),
    sizes: new Set(sources.map((g) => g.size)),
    shapes: new Set(sources.map((g) => g.shape)),
    colors: new Set(sources.map((g) => g.color)),
  };
}

const GROW = new Set(["bigger", "larger", "enlarge", "grow", "up"]);
const SHRINK = new Set(["smaller", "shrink", "down"]);

/** A group as an edit states it: every field, so the plan of the group is fixed. */
type StatedGroup = Scene["objects"][number];

/**
 * The scene an edit turn states, when its words leave one reading: references ("the red star", "it" when
 * there is one group) pick the edited group, and what else the turn says picks the edit — new object
 * mentions add groups (or, with the edited group's shape and colour, recount it), a position or relation
 * moves it, a colour recolours it, a size word or bigger/smaller resizes it, and a reference with nothing
 * else removes it (an unknown verb with only a reference: "drop the star"). Style, background and lighting
 * edits leave every group as it was. Null when the turn reads more than one way.
 */
export function statedEdit(previous: Scene, turn: string): StatedGroup[] | null {
  const groups = readEdit(previous, turn);
  if (!groups) return null;
  try {
    parseScene({ ...previous, objects: groups }, "edit"); // e.g. a relation to a group of two
    return groups;
  } catch {
    return null;
  }
}

function readEdit(previous: Scene, turn: string): StatedGroup[] | null {
  const groups = previous.objects;
  const list = tokens(turn);
  const refs: number[] = [];
  const added: { mention: ObjectMention; placement: Placement }[] = [];
  const loose = { colors: [] as Color[], sizes: [] as Size[], grow: false, shrink: false };
  const moves: Placement[] = [];
  let pendingRelation: Relation | null = null;
  let open: { at: number; between: string[]; count: number } | null = null;
  for (let i = 0; i < list.length; ) {
    const word = list[i]!;
    const phrase = PHRASES.find((p) => p.words.every((w, k) => list[i + k] === w));
    if (phrase && !open) {
      if (phrase.mark.kind === "position") {
        const position = phrase.mark.position;
        if (added.length > 0 && refs.length === 0) added.at(-1)!.placement = { kind: "grid", position };
        else moves.push({ kind: "grid", position });
      } else if (phrase.mark.kind === "relation") pendingRelation = phrase.mark.relation;
      i += phrase.words.length;
      continue;
    }
    const reference = open ? null : definiteReference(list, i);
    if (reference) {
      let index: number | null;
      if (reference.shape) index = resolveReference(groups, reference);
      else {
        const color = reference.modifiers.find((m) => COLOR_WORDS.has(m));
        const matches = groups.flatMap((g, k) => (color && g.color === color ? [k] : []));
        index = matches.length === 1 ? matches[0]! : null;
      }
      if (index === null) return null;
      if (pendingRelation) {
        const placement: Placement = { kind: "relation", relation: pendingRelation, of: index };
        if (added.length > 0 && refs.length === 0) added.at(-1)!.placement = placement;
        else moves.push(placement);
        pendingRelation = null;
      } else refs.push(index);
      i = reference.end;
      continue;
    }
    if (word === "it" || word === "them") {
      // after a reference, "it" is that group ("shift the star so it sits …")
      if (refs.length === 0 && groups.length !== 1) return null;
      if (refs.length === 0) refs.push(0);
    } else if (DETERMINERS.has(word) && !(word === "one" && list[i + 1] === "more")) {
      open = { at: i, between: [], count: determinerCount(word) };
    } else if (open && SHAPE_BY_WORD.has(word)) {
      const [mention] = objectMentions(list.slice(open.at, i + 1).join(" "));
      if (mention) added.push({ mention, placement: { kind: "free" } });
      open = null;
    } else if (open) {
      if (open.between.length >= MAX_MODIFIERS) open = null;
      else open.between.push(word);
    } else if (COLOR_WORDS.has(word)) loose.colors.push(word as Color);
    else if (SIZE_BY_WORD.has(word)) loose.sizes.push(SIZE_BY_WORD.get(word)!);
    else if (GROW.has(word)) loose.grow = true;
    else if (SHRINK.has(word)) loose.shrink = true;
    i++;
  }
  if (pendingRelation) return null;
  const targets = [...new Set(refs)];
  const next = groups.map((g) => ({ ...g, placement: { ...g.placement } }) as StatedGroup);
  if (added.length > 0) {
    const target = targets.length === 1 ? groups[targets[0]!]! : null;
    const only = added.length === 1 ? added[0]!.mention : null;
    if (target && only && only.shape === target.shape && (only.color ?? target.color) === target.color) {
      if (only.count === undefined) return null;
      next[targets[0]!]!.count = only.count; // "swap the crosses for three blue crosses"
      return next;
    }
    if (targets.length > 0 || moves.length > 0) return null;
    for (const { mention, placement } of added) {
      if (!mention.color || mention.count === undefined) return null;
      next.push({
        shape: mention.shape,
        color: mention.color,
        size: mention.size ?? REQUEST_DEFAULTS.size,
        count: mention.count,
        placement,
      });
    }
    return next.length <= MAX_GROUPS ? next : null;
  }
  if (targets.length === 0) return moves.length === 0 && loose.colors.length === 0 ? next : null;
  if (targets.length !== 1) return null;
  const target = targets[0]!;
  const group = next[target]!;
  const changes = [
    moves.length > 0,
    loose.colors.length > 0,
    loose.sizes.length > 0 || loose.grow || loose.shrink,
  ];
  if (changes.filter(Boolean).length > 1 || moves.length > 1 || loose.colors.length > 1) return null;
  if (moves.length === 1) group.placement = moves[0]!;
  else if (loose.colors.length === 1) group.color = loose.colors[0]!;
  else if (loose.sizes.length === 1) group.size = loose.sizes[0]!;
  else if (loose.grow !== loose.shrink) {
    const size = SIZES[SIZES.indexOf(group.size) + (loose.grow ? 1 : -1)];
    if (!size) return null;
    group.size = size;
  } else if (!loose.grow && loose.sizes.length === 0) {
    // Only a reference: a removal. Groups after it move up; relations to them follow.
    if (next.some((g) => g.placement.kind === "relation" && g.placement.of === target)) return null;
    next.splice(target, 1);
    for (const g of next) if (g.placement.kind === "relation" && g.placement.of > target) g.placement.of -= 1;
    return next.length > 0 ? next : null;
  } else return null;
  return next;
}
