/**
 * Scene sampler, held-out compositions and hash-based splits.
 *
 * Splits: a scene's split is a function of the scene alone (`sceneSplit`: sha256 of its canonical JSON, mod
 * 100: 0–89 train, 90–94 val, 95–99 test), so one scene can never land in two splits. On top of that,
 * train never contains a HELD-OUT composition (below); val and test may, so generalisation to unseen
 * combinations of known words can be measured on them.
 */
import { createHash } from "node:crypto";
import { invalid } from "../src/errors.ts";
import { layoutScene } from "./layout.ts";
import type { Rng } from "./rng.ts";
import {
  BACKGROUNDS,
  COLORS,
  type Color,
  LIGHTINGS,
  MAX_GROUPS,
  MAX_OBJECTS,
  type ObjectGroup,
  type Placement,
  POSITIONS,
  type Position,
  RELATIONS,
  type Relation,
  type Scene,
  SceneSchema,
  SHAPES,
  type Shape,
  SIZES,
  STYLES,
} from "./scene.ts";

export const SPLITS = ["train", "val", "test"] as const;
export type Split = (typeof SPLITS)[number];

/** Colour–shape pairs that never appear in train (each shape once, no colour twice; orange is kept whole). */
export const HELD_OUT_COLOR_SHAPES: readonly { color: Color; shape: Shape }[] = [
  { color: "blue", shape: "triangle" },
  { color: "red", shape: "star" },
  { color: "green", shape: "cross" },
  { color: "yellow", shape: "diamond" },
  { color: "purple", shape: "circle" },
  { color: "pink", shape: "square" },
];

/**
 * Shape pair + relation combinations that never appear in train as a stated relation, in either phrasing:
 * "star left_of square" also holds out "square right_of star". (Free-placed objects can still happen to sit
 * in such an arrangement in train images; what is held out is the composition in the scene / its language.)
 */
export const HELD_OUT_RELATIONS: readonly { a: Shape; relation: Relation; b: Shape }[] = [
  { a: "star", relation: "left_of", b: "square" },
  { a: "circle", relation: "above", b: "triangle" },
  { a: "cross", relation: "right_of", b: "diamond" },
  { a: "triangle", relation: "below", b: "star" },
];

const heldOutPair = (color: Color, shape: Shape): boolean =>
  HELD_OUT_COLOR_SHAPES.some((pair) => pair.color === color && pair.shape === shape);

const INVERSE: Record<Relation, Relation> = {
  left_of: "right_of",
  right_of: "left_of",
  above: "below",
  below: "above",
};

/** Labels of the held-out compositions a scene contains ("red star", "star left_of square"); [] if none. */
export function isHeldOut(scene: Scene): string[] {
  const hits: string[] = [];
  for (const { color, shape } of HELD_OUT_COLOR_SHAPES) {
    if (scene.objects.some((group) => group.color === color && group.shape === shape)) {
      hits.push(`${color} ${shape}`);
    }
  }
  for (const { a, relation, b } of HELD_OUT_RELATIONS) {
    const found = scene.objects.some((group) => {
      const placement = group.placement;
      if (placement.kind !== "relation") return false;
      const anchor = scene.objects[placement.of];
      if (!anchor) return false;
      return (
        (group.shape === a && placement.relation === relation && anchor.shape === b) ||
        (group.shape === b && placement.relation === INVERSE[relation] && anchor.shape === a)
      );
    });
    if (found) hits.push(`${a} ${relation} ${b}`);
  }
  return hits;
}

/** JSON with object keys sorted at every level: the same scene always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** sha256 (hex) of the scene's canonical JSON. */
export function sceneHash(scene: Scene): string {
  return createHash("sha256").update(canonicalJson(scene)).digest("hex");
}

export function sceneSplit(scene: Scene): Split {
  const bucket = Number.parseInt(sceneHash(scene).slice(0, 8), 16) % 100;
  return bucket < 90 ? "train" : bucket < 95 ? "val" : "test";
}

export interface SampleOptions {
  /** Only return scenes of this split (train also excludes held-out compositions). */
  split?: Split;
  /**
   * Deterministic coverage: sample i of a run forces the style, background, lighting and the first group's
   * shape and colour to cycle through the vocabulary, so any 12+ consecutive samples show every style,
   * background and lighting, and 42 show every shape–colour pair.
   */
  cycle?: number;
}

function pickWeighted<T>(rng: Rng, items: readonly (readonly [T, number])[]): T {
  let total = 0;
  for (const [, weight] of items) total += weight;
  let u = rng.next() * total;
  for (const [item, weight] of items) {
    u -= weight;
    if (u < 0) return item;
  }
  return items[items.length - 1]![0];
}

/** One draw, before split filtering; may be unsatisfiable for layout (checked by the caller). */
function drawScene(rng: Rng, cycle: number | undefined, avoidHeldOut: boolean): Scene {
  const groupCount = pickWeighted(rng, [
    [1, 30],
    [2, 35],
    [3, 20],
    [4, 15],
  ] as const);
  const groups: ObjectGroup[] = [];
  const usedKinds = new Set<string>();
  const usedPositions = new Set<Position>();
  let objects = 0;
  for (let index = 0; index < groupCount && index < MAX_GROUPS; index++) {
    let shape = rng.pick(SHAPES);
    let color = rng.pick(COLORS);
    if (index === 0 && cycle !== undefined) {
      shape = SHAPES[cycle % SHAPES.length]!;
      color = COLORS[cycle % COLORS.length]!;
      if (avoidHeldOut && heldOutPair(color, shape)) color = COLORS[(cycle + 1) % COLORS.length]!;
    }
    // Two groups of the same kind would read as one group ("a red star and a red star").
    while (usedKinds.has(`${color} ${shape}`) || (avoidHeldOut && heldOutPair(color, shape))) {
      shape = rng.pick(SHAPES);
      color = rng.pick(COLORS);
    }
    usedKinds.add(`${color} ${shape}`);
    const remainingGroups = groupCount - index - 1;
    const room = MAX_OBJECTS - objects - remainingGroups;
    const count = rng.chance(0.28) ? Math.min(room, 2 + rng.int(3)) : 1;
    const placement = count > 1 ? ({ kind: "free" } as const) : drawPlacement(rng, groups, usedPositions);
    groups.push({ shape, color, size: rng.pick(SIZES), count, placement });
    objects += count;
  }
  return {
    objects: shuffleGroups(rng, groups),
    background: cycle === undefined ? rng.pick(BACKGROUNDS) : BACKGROUNDS[cycle % BACKGROUNDS.length]!,
    style: cycle === undefined ? rng.pick(STYLES) : STYLES[cycle % STYLES.length]!,
    lighting:
      cycle === undefined
        ? rng.pick(LIGHTINGS)
        : LIGHTINGS[Math.floor(cycle / (STYLES.length * BACKGROUNDS.length)) % LIGHTINGS.length]!,
  };
}

/**
 * Groups are drawn anchors first; a random order lets a relation's subject come before its anchor too, as
 * in "a star to the left of a square" (object 1 relative to object 2).
 */
function shuffleGroups(rng: Rng, groups: ObjectGroup[]): ObjectGroup[] {
  const order = rng.shuffle(groups.map((_, index) => index));
  const newIndex: number[] = [];
  order.forEach((old, index) => {
    newIndex[old] = index;
  });
  return order.map((old) => {
    const group = groups[old]!;
    const placement = group.placement;
    return placement.kind === "relation"
      ? { ...group, placement: { ...placement, of: newIndex[placement.of]! } }
      : group;
  });
}

function drawPlacement(rng: Rng, earlier: ObjectGroup[], usedPositions: Set<Position>): Placement {
  const anchors = earlier
    .map((group, index) => ({ group, index }))
    .filter(({ group }) => group.count === 1 && group.placement.kind !== "relation");
  const kind = pickWeighted(rng, [
    ["free", 30],
    ["grid", 35],
    ["relation", anchors.length > 0 ? 45 : 0],
  ] as const);
  if (kind === "grid") {
    const open = POSITIONS.filter((position) => !usedPositions.has(position));
    const position = rng.pick(open);
    usedPositions.add(position);
    return { kind: "grid", position };
  }
  if (kind === "relation") {
    return { kind: "relation", relation: rng.pick(RELATIONS), of: rng.pick(anchors).index };
  }
  return { kind: "free" };
}

function layoutFits(scene: Scene): boolean {
  try {
    layoutScene(scene, 0);
    return true;
  } catch {
    return false;
  }
}

const MAX_TRIES = 10_000;

/**
 * Samples a valid, satisfiable scene covering the whole vocabulary: 1–4 groups, counts 1–4 (multi-object
 * groups are free-placed), grid positions, relations, every style, background and lighting.
 */
export function sampleScene(rng: Rng, options: SampleOptions = {}): Scene {
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const scene = drawScene(rng, options.cycle, options.split === "train");
    // The split test comes first because it is the most selective (5 % for val and test).
    if (options.split !== undefined && sceneSplit(scene) !== options.split) continue;
    if (options.split === "train" && isHeldOut(scene).length > 0) continue;
    if (!SceneSchema.safeParse(scene).success || !layoutFits(scene)) continue;
    return scene;
  }
  throw invalid("split", `no scene of split ${options.split} found in ${MAX_TRIES} draws`);
}
