/**
 * The critique loop's language: a field-by-field comparison of a target scene with the description of a
 * generated image, its critique text ("the star should be red, not blue; one circle is missing"), and
 * revision examples (target plan, flawed description, critique, revised plan) for training the planner.
 */
import { relationHolds } from "../layout.ts";
import type { Rng } from "../rng.ts";
import {
  BACKGROUNDS,
  COLORS,
  LIGHTINGS,
  MAX_GROUPS,
  MAX_OBJECTS,
  type ObjectGroup,
  type Placement,
  POSITIONS,
  type Position,
  RELATIONS,
  type Scene,
  SceneSchema,
  SHAPES,
  SIZES,
  STYLES,
} from "../scene.ts";
import { applyEdit, type Edit } from "./edits.ts";
import { printPlan } from "./plan.ts";
import { referringPhrase } from "./refs.ts";
import { article, numberWord, positionWords, shapeWord } from "./words.ts";

/** Best one-to-one pairing of target groups with described groups (index into described, or -1). */
export function matchGroups(target: Scene, described: Scene): number[] {
  const score = (t: ObjectGroup, d: ObjectGroup): number => {
    const placementAlike = JSON.stringify(t.placement) === JSON.stringify(d.placement);
    if (t.shape !== d.shape) return t.color === d.color && t.count === d.count && placementAlike ? 3 : -1;
    return (
      10 +
      (t.color === d.color ? 4 : 0) +
      (t.size === d.size ? 1 : 0) +
      (t.count === d.count ? 1 : 0) +
      (placementAlike ? 1 : 0)
    );
  };
  let best: number[] = target.objects.map(() => -1);
  let bestScore = -1;
  const used = new Set<number>();
  const current: number[] = [];
  const search = (i: number, sum: number) => {
    if (i === target.objects.length) {
      if (sum > bestScore) {
        bestScore = sum;
        best = current.slice();
      }
      return;
    }
    described.objects.forEach((d, j) => {
      if (used.has(j)) return;
      const s = score(target.objects[i]!, d);
      if (s < 0) return;
      used.add(j);
      current.push(j);
      search(i + 1, sum + s);
      current.pop();
      used.delete(j);
    });
    current.push(-1);
    search(i + 1, sum);
    current.pop();
  };
  search(0, 0);
  return best;
}

const CELL: Record<string, number> = Object.fromEntries(POSITIONS.map((p, i) => [p, i]));

/** Whether a described group's placement satisfies the target's ("anywhere" is satisfied by everything). */
function placementHolds(want: Placement, got: Placement, described: Scene, match: number[]): boolean {
  if (want.kind === "free") return true;
  if (want.kind === "grid") return got.kind === "grid" && got.position === want.position;
  const anchor = match[want.of] ?? -1;
  if (anchor < 0) return false;
  if (got.kind === "relation") return got.relation === want.relation && got.of === anchor;
  const anchorPlacement = described.objects[anchor]!.placement;
  return (
    got.kind === "grid" &&
    anchorPlacement.kind === "grid" &&
    relationHolds(want.relation, CELL[got.position]!, CELL[anchorPlacement.position]!)
  );
}

/** What a failed check is about: a whole object (missing, extra), one of its fields, or a scene field. */
export const FINDING_FIELDS = [
  "missing",
  "extra",
  "shape",
  "color",
  "size",
  "count",
  "position",
  "relation",
  "style",
  "background",
  "lighting",
] as const;
export type FindingField = (typeof FINDING_FIELDS)[number];

/** One failed check as data: `issues[k]` of a SceneDiff is `findings[k]` in words. */
export interface Finding {
  field: FindingField;
  /** Index of the target group it concerns; for `extra`, of the described group that should not be there. */
  object?: number;
  /** What the plan asks for (null for an extra object). */
  expected: string | number | null;
  /** What the image shows (null for a missing object, or a placement the description leaves open). */
  found: string | number | null;
}

export interface SceneDiff {
  /** Checks made (per target group: shape, colour, size, count, placement; one per extra group; 3 scene fields). */
  checks: number;
  /** The failed checks, as critique sentences, in a stable order. */
  issues: string[];
  /** The same failed checks as structured data, in the same order. */
  findings: Finding[];
}

const RELATION_PHRASE = {
  left_of: "to the left of",
  right_of: "to the right of",
  above: "above",
  below: "below",
};

/** Where a grid cell is, as critiques say it: "in the center", "on the left", "at the top left". */
export function positionPhrase(p: Position): string {
  const preposition = p === "center" ? "in" : p === "left" || p === "right" ? "on" : "at";
  return `${preposition} the ${positionWords(p)}`;
}

function placementPhrase(placement: Placement, scene: Scene): string {
  if (placement.kind === "grid") return positionPhrase(placement.position);
  if (placement.kind === "relation") {
    return `${RELATION_PHRASE[placement.relation]} ${referringPhrase(scene, placement.of)}`;
  }
  return "anywhere";
}

function bare(group: Pick<ObjectGroup, "color" | "shape" | "count">): string {
  const noun = `${group.color} ${shapeWord(group.shape, group.count)}`;
  return group.count === 1 ? `${article(noun)} ${noun}` : `${numberWord(group.count)} ${noun}`;
}

/** Field-by-field comparison of what was asked (`target`) with what the image shows (`described`). */
export function diffScenes(target: Scene, described: Scene): SceneDiff {
  const match = matchGroups(target, described);
  const issues: string[] = [];
  const findings: Finding[] = [];
  const fail = (finding: Finding, sentence: string) => {
    findings.push(finding);
    issues.push(sentence);
  };
  let checks = 0;
  target.objects.forEach((t, i) => {
    checks += 5;
    const j = match[i]!;
    const name = referringPhrase(target, i);
    if (j < 0) {
      fail(
        { field: "missing", object: i, expected: bare(t), found: null },
        `${bare(t)} ${t.count === 1 ? "is" : "are"} missing`,
      );
      return;
    }
    const d = described.objects[j]!;
    if (d.shape !== t.shape)
      fail(
        { field: "shape", object: i, expected: t.shape, found: d.shape },
        `the ${d.color} ${shapeWord(d.shape, d.count)} should be ${t.count === 1 ? `${article(t.shape)} ${t.shape}` : shapeWord(t.shape, t.count)}`,
      );
    if (d.color !== t.color)
      fail(
        { field: "color", object: i, expected: t.color, found: d.color },
        `${name} should be ${t.color}, not ${d.color}`,
      );
    if (d.size !== t.size)
      fail(
        { field: "size", object: i, expected: t.size, found: d.size },
        `${name} should be ${t.size}, not ${d.size}`,
      );
    const count = { field: "count", object: i, expected: t.count, found: d.count } as const;
    if (d.count < t.count) {
      const k = t.count - d.count;
      fail(count, `${numberWord(k)} ${shapeWord(t.shape, k)} ${k === 1 ? "is" : "are"} missing`);
    } else if (d.count > t.count) {
      const k = d.count - t.count;
      fail(count, `there ${k === 1 ? "is" : "are"} ${numberWord(k)} ${shapeWord(t.shape, k)} too many`);
    }
    if (!placementHolds(t.placement, d.placement, described, match)) {
      const found = d.placement.kind === "free" ? null : placementPhrase(d.placement, described);
      fail(
        {
          field: t.placement.kind === "relation" ? "relation" : "position",
          object: i,
          expected: placementPhrase(t.placement, target),
          found,
        },
        `${name} should be ${placementPhrase(t.placement, target)}${found === null ? "" : `, not ${found}`}`,
      );
    }
  });
  described.objects.forEach((d, j) => {
    if (match.includes(j)) return;
    checks += 1;
    fail(
      { field: "extra", object: j, expected: null, found: bare(d) },
      `there should be no ${d.color} ${shapeWord(d.shape, d.count)}`,
    );
  });
  checks += 3;
  for (const field of ["style", "background", "lighting"] as const) {
    if (described[field] !== target[field])
      fail(
        { field, expected: target[field], found: described[field] },
        `the ${field} should be ${target[field]}, not ${described[field]}`,
      );
  }
  return { checks, issues, findings };
}

/** Share of checks that hold, in [0, 1]; 1 when the description agrees with the target in every field. */
export function agreement(target: Scene, described: Scene): number {
  const { checks, issues } = diffScenes(target, described);
  return (checks - issues.length) / checks;
}

/** Deterministic critique: "the star should be red, not blue; one circle is missing". */
export function critiqueText(target: Scene, described: Scene): string {
  const { issues } = diffScenes(target, described);
  return issues.length === 0 ? "the image matches the plan" : issues.join("; ");
}

export const FAULTS = [
  "color",
  "missing",
  "extra",
  "count",
  "position",
  "style",
  "background",
  "lighting",
] as const;
export type Fault = (typeof FAULTS)[number];

const others = <T>(items: readonly T[], current: T) => items.filter((item) => item !== current);
const total = (scene: Scene) => scene.objects.reduce((sum, g) => sum + g.count, 0);
const isAnchor = (scene: Scene, index: number) =>
  scene.objects.some((g) => g.placement.kind === "relation" && g.placement.of === index);

/** A realistic mistake of the generator, as an edit of the scene it was asked for; null if it cannot apply. */
function faultEdit(scene: Scene, fault: Fault, rng: Rng): Edit | null {
  const target = rng.int(scene.objects.length);
  const group = scene.objects[target]!;
  switch (fault) {
    case "color":
      return { kind: "recolor", target, color: rng.pick(others(COLORS, group.color)) };
    case "missing":
      if (group.count > 1) return { kind: "recount", target, count: group.count - 1 };
      return scene.objects.length > 1 && !isAnchor(scene, target) ? { kind: "remove", target } : null;
    case "extra":
      if (total(scene) >= MAX_OBJECTS) return null;
      if (group.placement.kind === "free" && !isAnchor(scene, target) && group.count < 4 && rng.chance(0.5)) {
        return { kind: "recount", target, count: group.count + 1 };
      }
      if (scene.objects.length >= MAX_GROUPS) return null;
      return {
        kind: "add",
        group: {
          shape: rng.pick(SHAPES),
          color: rng.pick(COLORS),
          size: rng.pick(SIZES),
          count: 1,
          placement: { kind: "free" },
        },
      };
    case "count": {
      if (group.placement.kind !== "free" || isAnchor(scene, target)) return null;
      const room = Math.min(4, MAX_OBJECTS - total(scene) + group.count);
      const counts = others(
        Array.from({ length: room }, (_, k) => k + 1),
        group.count,
      );
      return counts.length > 0 ? { kind: "recount", target, count: rng.pick(counts) } : null;
    }
    case "position": {
      const p = group.placement;
      if (p.kind === "grid") {
        return {
          kind: "move",
          target,
          placement: { kind: "grid", position: rng.pick(others(POSITIONS, p.position)) },
        };
      }
      if (p.kind === "relation") {
        return {
          kind: "move",
          target,
          placement: { ...p, relation: rng.pick(others(RELATIONS, p.relation)) },
        };
      }
      return null;
    }
    case "style":
      return { kind: "restyle", style: rng.pick(others(STYLES, scene.style)) };
    case "background":
      return { kind: "background", background: rng.pick(others(BACKGROUNDS, scene.background)) };
    case "lighting":
      return { kind: "lighting", lighting: rng.pick(others(LIGHTINGS, scene.lighting)) };
  }
}

export interface RevisionExample {
  /** The plan the image was generated from. */
  target: string;
  /** The plan-format description of the flawed image. */
  description: string;
  critique: string;
  /** What the planner should answer with: the target plan, restated. */
  revised: string;
  faults: Fault[];
}

/** A revision example: the target with one or two realistic faults in its description. */
export function revisionExample(scene: Scene, rng: Rng): RevisionExample {
  const wanted = rng.chance(0.6) ? 1 : 2;
  const faults: Fault[] = [];
  let described = scene;
  for (const fault of rng.shuffle(FAULTS)) {
    if (faults.length === wanted) break;
    const edit = faultEdit(described, fault, rng);
    if (!edit) continue;
    let next: Scene;
    try {
      next = applyEdit(described, edit);
    } catch {
      continue;
    }
    // A second fault must not undo the first (one circle missing, then one extra).
    if (!SceneSchema.safeParse(next).success || diffScenes(scene, next).issues.length <= faults.length)
      continue;
    described = next;
    faults.push(fault);
  }
  const target = printPlan(scene);
  return {
    target,
    description: printPlan(described),
    critique: critiqueText(scene, described),
    revised: target,
    faults,
  };
}
