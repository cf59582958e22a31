/**
 * The plan grammar, written once as a token-level state machine. Three users share it: `parsePlan` (text
 * → Scene), the planner's constrained decoder (which asks `allowed()` at every step, so every reachable
 * state's answer is a cached, shared set) and tests. Every token sequence the machine accepts parses into
 * a scene that `parseScene` accepts: the scene model's cross-field rules (≤ 9 objects in all, a placed or
 * related group holds one object, relations point at another single, non-relation group) are enforced
 * while decoding, not afterwards.
 */
import { invalid } from "../../src/errors.ts";
import {
  BACKGROUNDS,
  type Background,
  COLORS,
  type Color,
  LIGHTINGS,
  type Lighting,
  MAX_COUNT,
  MAX_GROUPS,
  MAX_OBJECTS,
  type Placement,
  type Position,
  type Relation,
  SHAPES,
  type Shape,
  SIZES,
  type Size,
  STYLES,
  type Style,
} from "../scene.ts";
import { NUMBER_WORDS, plural } from "./words.ts";

export const PLAN_SPECIAL_TOKENS = [
  "<IMG_BEGIN>",
  "<STYLE>",
  "<LAYOUT>",
  "<OBJECT>",
  "<COLOR>",
  "<MATERIAL>",
  "<LIGHTING>",
  "<CAMERA>",
  "<IMG_END>",
] as const;

const GROUP_NUMBERS = Array.from({ length: MAX_GROUPS }, (_, i) => String(i + 1));
const PLURAL_SHAPES = SHAPES.map(plural);
const SEP = ";";

/** Every token the grammar can emit, in a stable order (the special tokens first). */
export function planVocabulary(): string[] {
  const words = [
    ...PLAN_SPECIAL_TOKENS.filter((t) => t !== "<MATERIAL>" && t !== "<CAMERA>"),
    SEP,
    ...GROUP_NUMBERS,
    ...STYLES,
    "top",
    "bottom",
    "left",
    "right",
    "center",
    "anywhere",
    "of",
    "above",
    "below",
    ...NUMBER_WORDS.slice(0, MAX_COUNT),
    ...SIZES,
    ...SHAPES,
    ...PLURAL_SHAPES,
    ...COLORS,
    "background",
    ...BACKGROUNDS,
    ...LIGHTINGS,
  ];
  return [...new Set(words)];
}

type Phase =
  | "begin"
  | "styleTag"
  | "style"
  | "layoutTag"
  | "layoutNumber"
  | "place"
  | "afterVertical" // after "top" / "bottom": a corner word may follow
  | "afterSide" // after "left" / "right": "of" may follow
  | "target" // after "of" / "above" / "below"
  | "layoutEnd"
  | "objectNumber"
  | "count"
  | "size"
  | "shape"
  | "objectEnd"
  | "colorNumber"
  | "color"
  | "colorEnd"
  | "background"
  | "lightingTag"
  | "lighting"
  | "endTag"
  | "done";

const cache = new Map<string, ReadonlySet<string>>();
function shared(key: string, make: () => string[]): ReadonlySet<string> {
  let set = cache.get(key);
  if (!set) {
    set = new Set(make());
    cache.set(key, set);
  }
  return set;
}
const one = (token: string) => shared(`=${token}`, () => [token]);

/**
 * Optional limits on what a plan may say, on top of the grammar (the planner's grounded decoding: only
 * values the conversation gives evidence for). A set restricts one slot's words; `groups` bounds the number
 * of object groups. A restriction that would leave a slot with no word is ignored for that slot, so a
 * restricted grammar still always reaches a complete plan.
 */
export interface PlanRestrictions {
  styles?: ReadonlySet<Style>;
  /** First words of a layout item: top, bottom, left, right, center, anywhere, above, below. */
  places?: ReadonlySet<string>;
  counts?: ReadonlySet<number>;
  sizes?: ReadonlySet<Size>;
  shapes?: ReadonlySet<Shape>;
  colors?: ReadonlySet<Color>;
  backgrounds?: ReadonlySet<Background>;
  lightings?: ReadonlySet<Lighting>;
  groups?: { min: number; max: number };
  /** Values allowed for group i (0-based), where the conversation says more about that group. */
  perGroup?: GroupRestriction[];
}

export interface GroupRestriction {
  /** The group's layout item, when the conversation states it. */
  placement?: Placement;
  counts?: ReadonlySet<number>;
  sizes?: ReadonlySet<Size>;
  shapes?: ReadonlySet<Shape>;
  colors?: ReadonlySet<Color>;
}

/** The fields collected while parsing; complete once `done`. */
export interface PlanFields {
  style?: Style;
  layout: Placement[];
  objects: { count: number; size: Size; shape: Shape }[];
  colors: Color[];
  background?: Background;
  lighting?: Lighting;
}

export class PlanGrammar {
  private phase: Phase = "begin";
  /** Tokens consumed so far. */
  position = 0;
  readonly fields: PlanFields = { layout: [], objects: [], colors: [] };
  /** Group indexes (0-based) that some relation points at. */
  private anchors = 0;
  private pendingWord = "";
  private pendingCount = 0;
  private pendingSize: Size = "small";
  private total = 0;
  constructor(
    private readonly restrictions: PlanRestrictions = {},
    /** Restricted copies of the shared sets, per shared set; clones share it (their restrictions are the same). */
    private readonly narrowed = new Map<ReadonlySet<string>, Map<string, ReadonlySet<string>>>(),
  ) {}

  get done(): boolean {
    return this.phase === "done";
  }

  clone(): PlanGrammar {
    const copy = new PlanGrammar(this.restrictions, this.narrowed);
    copy.phase = this.phase;
    copy.position = this.position;
    copy.fields.style = this.fields.style;
    copy.fields.layout.push(...this.fields.layout.map((p) => ({ ...p })));
    copy.fields.objects.push(...this.fields.objects.map((o) => ({ ...o })));
    copy.fields.colors.push(...this.fields.colors);
    copy.fields.background = this.fields.background;
    copy.fields.lighting = this.fields.lighting;
    copy.anchors = this.anchors;
    copy.pendingWord = this.pendingWord;
    copy.pendingCount = this.pendingCount;
    copy.pendingSize = this.pendingSize;
    copy.total = this.total;
    return copy;
  }

  private get groups(): number {
    return this.fields.layout.length;
  }

  private isAnchor(index: number): boolean {
    return (this.anchors & (1 << index)) !== 0;
  }

  /** Bitmask of groups the current layout item (the last one) may relate to. */
  private targetMask(): number {
    const self = this.groups; // index of the item being written
    if (this.isAnchor(self)) return 0;
    let mask = 0;
    for (let j = 0; j < MAX_GROUPS; j++) {
      if (j === self) continue;
      if (j < self && this.fields.layout[j]!.kind === "relation") continue;
      mask |= 1 << j;
    }
    return mask;
  }

  /** The highest group number a relation has referred to so far. */
  private highestAnchor(): number {
    return this.anchors === 0 ? 0 : 32 - Math.clz32(this.anchors);
  }

  /** The largest count group `index` may take: placed or anchoring groups hold one; the total stays ≤ 9. */
  private maxCount(index: number): number {
    if (this.fields.layout[index]!.kind !== "free" || this.isAnchor(index)) return 1;
    const later = this.groups - index - 1;
    return Math.min(MAX_COUNT, MAX_OBJECTS - this.total - later);
  }

  /** The exact set of tokens that may come next (empty once done). Shared: do not mutate. */
  allowed(): ReadonlySet<string> {
    const base = this.grammarAllows();
    const restriction = this.restrictionFor();
    if (!restriction) return base;
    let byKey = this.narrowed.get(base);
    if (!byKey) {
      byKey = new Map();
      this.narrowed.set(base, byKey);
    }
    let set = byKey.get(restriction.key);
    if (!set) {
      const kept = [...base].filter(restriction.keep);
      set = kept.length > 0 ? new Set(kept) : base;
      byKey.set(restriction.key, set);
    }
    return set;
  }

  /** The restriction of the current slot as a word filter (with a cache key), if any. */
  private restrictionFor(): { key: string; keep: (word: string) => boolean } | null {
    const r = this.restrictions;
    const index = this.phase === "color" ? this.fields.colors.length : this.fields.objects.length;
    const group = r.perGroup?.[index];
    const layoutItem = this.layoutRestriction(r.perGroup?.[this.groups]?.placement);
    if (layoutItem) return layoutItem;
    // A group's own set wins over the plan-wide one; the key names the set by its values.
    const within = <T extends string | number>(
      slot: string,
      own: ReadonlySet<T> | undefined,
      all: ReadonlySet<T> | undefined,
      value: (word: string) => T = (word) => word as T,
    ) => {
      const set = own ?? all;
      if (!set) return null;
      return { key: `${slot}=${[...set].sort().join(",")}`, keep: (word: string) => set.has(value(word)) };
    };
    switch (this.phase) {
      case "style":
        return within("style", undefined, r.styles);
      case "place":
        return within("place", undefined, r.places);
      case "count":
        return within("count", group?.counts, r.counts, (w) => NUMBER_WORDS.indexOf(w as never) + 1);
      case "size":
        return within("size", group?.sizes, r.sizes);
      case "shape":
        return within("shape", group?.shapes, r.shapes, (w) =>
          this.pendingCount === 1 ? (w as Shape) : SHAPES[PLURAL_SHAPES.indexOf(w)]!,
        );
      case "color":
        return within("color", group?.colors, r.colors);
      case "background":
        return within("background", undefined, r.backgrounds);
      case "lighting":
        return within("lighting", undefined, r.lightings);
      default:
        return null;
    }
  }

  /** The words a stated placement allows in the layout phases (null outside them or when none is stated). */
  private layoutRestriction(
    placement: Placement | undefined,
  ): { key: string; keep: (w: string) => boolean } | null {
    if (!placement) return null;
    const [first, second] =
      placement.kind === "free"
        ? ["anywhere", null]
        : placement.kind === "grid"
          ? (placement.position.split("_") as [string, string | undefined])
          : placement.relation === "left_of" || placement.relation === "right_of"
            ? [placement.relation.replace("_of", ""), "of"]
            : [placement.relation, null];
    const key = `layout=${JSON.stringify(placement)}`;
    switch (this.phase) {
      case "place":
        return { key, keep: (w) => w === first };
      case "afterVertical": // a corner word, or the end of the item
      case "afterSide": // "of", or the end of the item
        return { key, keep: (w) => (second ? w === second : w !== "left" && w !== "right" && w !== "of") };
      case "target":
        return placement.kind === "relation" ? { key, keep: (w) => w === String(placement.of + 1) } : null;
      default:
        return null;
    }
  }

  private grammarAllows(): ReadonlySet<string> {
    switch (this.phase) {
      case "begin":
        return one("<IMG_BEGIN>");
      case "styleTag":
        return one("<STYLE>");
      case "style":
        return shared("style", () => [...STYLES]);
      case "layoutTag":
        return one("<LAYOUT>");
      case "layoutNumber":
        return one(String(this.groups + 1));
      case "place": {
        const related = this.targetMask() !== 0;
        return shared(`place/${related}`, () => [
          "top",
          "bottom",
          "left",
          "right",
          "center",
          "anywhere",
          ...(related ? ["above", "below"] : []),
        ]);
      }
      case "afterVertical":
        return this.layoutEnd(["left", "right"]);
      case "afterSide":
        return this.layoutEnd(this.targetMask() !== 0 ? ["of"] : []);
      case "target": {
        const mask = this.targetMask();
        return shared(`target/${mask}`, () => GROUP_NUMBERS.filter((_, j) => (mask & (1 << j)) !== 0));
      }
      case "layoutEnd":
        return this.layoutEnd([]);
      case "objectNumber":
        return one(String(this.fields.objects.length + 1));
      case "count": {
        const max = this.maxCount(this.fields.objects.length);
        return shared(`count/${max}`, () => NUMBER_WORDS.slice(0, max));
      }
      case "size":
        return shared("size", () => [...SIZES]);
      case "shape":
        return this.pendingCount === 1
          ? shared("shape/1", () => [...SHAPES])
          : shared("shape/n", () => PLURAL_SHAPES);
      case "objectEnd":
        return this.fields.objects.length < this.groups ? one(SEP) : one("<COLOR>");
      case "colorNumber":
        return this.fields.colors.length < this.groups
          ? one(String(this.fields.colors.length + 1))
          : one("background");
      case "color":
        return shared("color", () => [...COLORS]);
      case "colorEnd":
        return one(SEP);
      case "background":
        return shared("background", () => [...BACKGROUNDS]);
      case "lightingTag":
        return one("<LIGHTING>");
      case "lighting":
        return shared("lighting", () => [...LIGHTINGS]);
      case "endTag":
        return one("<IMG_END>");
      case "done":
        return shared("done", () => []);
    }
  }

  /**
   * The item being written is complete (unless `more` continues it): another item may follow while there
   * is room, and the layout may close once every group a relation named has been declared.
   */
  private layoutEnd(more: string[]): ReadonlySet<string> {
    const count = this.groups + (this.phase === "layoutEnd" ? 0 : 1);
    let canContinue = count < MAX_GROUPS;
    let canClose = this.highestAnchor() <= count;
    const bounds = this.restrictions.groups;
    if (bounds) {
      // Bounds yield to the grammar: a relation to a later group must still be declared.
      const continueWithin = canContinue && count < bounds.max;
      const closeWithin = canClose && count >= bounds.min;
      if (continueWithin || closeWithin) {
        canContinue = continueWithin;
        canClose = closeWithin;
      }
    }
    return shared(`end/${more.join(",")}/${canContinue}/${canClose}`, () => [
      ...more,
      ...(canContinue ? [SEP] : []),
      ...(canClose ? ["<OBJECT>"] : []),
    ]);
  }

  /** Consumes one token; throws invalid("plan", …) naming the token's position if it is not allowed. */
  advance(token: string): void {
    const allowed = this.allowed();
    if (!allowed.has(token)) {
      throw invalid(
        "plan",
        `unexpected token ${this.position + 1} ('${token}'): expected ${describeAllowed(allowed)}`,
      );
    }
    this.position++;
    this.step(token);
  }

  private closeItem(placement: Placement): void {
    this.fields.layout.push(placement);
    if (placement.kind === "relation") this.anchors |= 1 << placement.of;
  }

  private step(token: string): void {
    const f = this.fields;
    switch (this.phase) {
      case "begin":
        this.phase = "styleTag";
        return;
      case "styleTag":
        this.phase = "style";
        return;
      case "style":
        f.style = token as Style;
        this.phase = "layoutTag";
        return;
      case "layoutTag":
      case "layoutNumber":
        this.phase = token === "<LAYOUT>" ? "layoutNumber" : "place";
        return;
      case "place":
        if (token === "top" || token === "bottom") this.phase = "afterVertical";
        else if (token === "left" || token === "right") this.phase = "afterSide";
        else if (token === "above" || token === "below") this.phase = "target";
        else {
          this.closeItem(token === "anywhere" ? { kind: "free" } : { kind: "grid", position: "center" });
          this.phase = "layoutEnd";
          return;
        }
        this.pendingWord = token;
        return;
      case "afterVertical":
        if (token === "left" || token === "right") {
          this.closeItem({ kind: "grid", position: `${this.pendingWord}_${token}` as Position });
          this.phase = "layoutEnd";
          return;
        }
        this.closeItem({ kind: "grid", position: this.pendingWord as Position });
        this.phase = "layoutEnd";
        this.step(token);
        return;
      case "afterSide":
        if (token === "of") {
          this.phase = "target";
          return;
        }
        this.closeItem({ kind: "grid", position: this.pendingWord as Position });
        this.phase = "layoutEnd";
        this.step(token);
        return;
      case "target": {
        const relation = (
          this.pendingWord === "above" || this.pendingWord === "below"
            ? this.pendingWord
            : `${this.pendingWord}_of`
        ) as Relation;
        this.closeItem({ kind: "relation", relation, of: Number(token) - 1 });
        this.phase = "layoutEnd";
        return;
      }
      case "layoutEnd":
        this.phase = token === SEP ? "layoutNumber" : "objectNumber";
        return;
      case "objectNumber":
        this.phase = "count";
        return;
      case "count":
        this.pendingCount = NUMBER_WORDS.indexOf(token as (typeof NUMBER_WORDS)[number]) + 1;
        this.phase = "size";
        return;
      case "size":
        this.pendingSize = token as Size;
        this.phase = "shape";
        return;
      case "shape": {
        const shape = this.pendingCount === 1 ? (token as Shape) : SHAPES[PLURAL_SHAPES.indexOf(token)]!;
        f.objects.push({ count: this.pendingCount, size: this.pendingSize, shape });
        this.total += this.pendingCount;
        this.phase = "objectEnd";
        return;
      }
      case "objectEnd":
        this.phase = token === SEP ? "objectNumber" : "colorNumber";
        return;
      case "colorNumber":
        this.phase = token === "background" ? "background" : "color";
        return;
      case "color":
        f.colors.push(token as Color);
        this.phase = "colorEnd";
        return;
      case "colorEnd":
        this.phase = "colorNumber";
        return;
      case "background":
        f.background = token as Background;
        this.phase = "lightingTag";
        return;
      case "lightingTag":
        this.phase = "lighting";
        return;
      case "lighting":
        f.lighting = token as Lighting;
        this.phase = "endTag";
        return;
      case "endTag":
        this.phase = "done";
        return;
      case "done":
        return;
    }
  }
}

function describeAllowed(allowed: ReadonlySet<string>): string {
  if (allowed.size === 0) return "the end of the plan";
  const list = [...allowed].map((t) => `'${t}'`);
  return list.length === 1 ? list[0]! : `one of ${list.join(", ")}`;
}

export function createPlanGrammar(restrictions?: PlanRestrictions): PlanGrammar {
  return new PlanGrammar(restrictions);
}

/** Splits plan text into the grammar's tokens. */
export function tokenizePlan(text: string): string[] {
  return text.split(/\s+/).filter(Boolean);
}

/** Runs the grammar over `text`; throws invalid("plan", …) naming the first bad token or the missing end. */
export function runPlanGrammar(text: string): PlanGrammar {
  const grammar = createPlanGrammar();
  for (const token of tokenizePlan(text)) grammar.advance(token);
  if (!grammar.done) {
    throw invalid(
      "plan",
      `the plan ends after token ${grammar.position}: expected ${describeAllowed(grammar.allowed())}`,
    );
  }
  return grammar;
}
