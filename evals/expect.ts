/**
 * GenEval-style judging of one image's detection against a prompt's `expect` block (DESIGN.md, "Eval
 * prompt files"): every clause must hold for the image to pass.
 */
import type { DetectedObject, Detection } from "./detector.ts";
import type { PromptExpect } from "./language/prompt-file.ts";
import type { Color, Position, Relation, Shape, Size } from "./scene.ts";
import { POSITIONS } from "./scene.ts";

/** A prompt's `expect` block (schema and satisfiability checks: evals/language/prompt-file.ts). */
export type Expect = PromptExpect;

export interface ClauseResult {
  clause: string;
  pass: boolean;
  detail: string;
}

export interface Judgement {
  pass: boolean;
  clauses: ClauseResult[];
}

/** Tolerance of the 3×3 position check, as a share of the canvas side (GenEval allows boxes to straddle lines). */
export const POSITION_MARGIN = 0.05;
/** Relations need the centres apart by this share of the two objects' summed extents (GenEval's threshold). */
export const RELATION_THRESHOLD = 0.1;

type Matchable = { shape: Shape; color?: Color; size?: Size };

function matches(object: DetectedObject, want: Matchable): boolean {
  return (
    object.shape === want.shape &&
    (want.color === undefined || object.color === want.color) &&
    (want.size === undefined || object.size === want.size)
  );
}

export function describeObject(want: Matchable): string {
  return [want.size, want.color, want.shape].filter(Boolean).join(" ");
}

function listFound(found: DetectedObject[]): string {
  if (found.length === 0) return "none";
  return found.map((o) => `${o.size} ${o.color} ${o.shape} at (${o.cx.toFixed(1)}, ${o.cy.toFixed(1)})`).join("; ");
}

/** Whether a centre lies in a cell of the 3×3 grid, widened by POSITION_MARGIN on each side. */
export function inPosition(cx: number, cy: number, position: Position, width: number, height: number): boolean {
  const cell = POSITIONS.indexOf(position);
  const col = cell % 3;
  const row = Math.floor(cell / 3);
  const inBand = (v: number, band: number, side: number) => {
    const margin = POSITION_MARGIN * side;
    return v >= (band * side) / 3 - margin && v <= ((band + 1) * side) / 3 + margin;
  };
  return inBand(cx, col, width) && inBand(cy, row, height);
}

/** GenEval's relative position: centres must differ by more than a margin proportional to the objects' extents. */
export function holdsRelation(a: DetectedObject, b: DetectedObject, rel: Relation): boolean {
  const extent = (o: DetectedObject, axis: 0 | 1) => o.bbox[axis + 2]! - o.bbox[axis]! + 1;
  const axis = rel === "left_of" || rel === "right_of" ? 0 : 1;
  const margin = Math.max(1, RELATION_THRESHOLD * (extent(a, axis) + extent(b, axis)));
  const delta = axis === 0 ? b.cx - a.cx : b.cy - a.cy;
  return rel === "left_of" || rel === "above" ? delta > margin : -delta > margin;
}

const REL_WORDS: Record<Relation, string> = {
  left_of: "left of",
  right_of: "right of",
  above: "above",
  below: "below",
};

/** Judges a detection; `width`/`height` are the image's (64×64 in the shapes world). */
export function judge(expect: Expect, detection: Detection, width = 64, height = 64): Judgement {
  const clauses: ClauseResult[] = [];
  const add = (clause: string, pass: boolean, detail: string) => clauses.push({ clause, pass, detail });
  const matched = expect.objects.map((want) => detection.objects.filter((o) => matches(o, want)));

  expect.objects.forEach((want, i) => {
    const found = matched[i]!;
    const name = describeObject(want);
    if (want.count !== undefined) {
      add(`objects[${i}]: exactly ${want.count} ${name}`, found.length === want.count, `found ${found.length}`);
    } else {
      add(`objects[${i}]: a ${name}`, found.length >= 1, `found ${found.length}`);
    }
    if (want.position !== undefined) {
      const needed = want.count ?? 1;
      const inside = found.filter((o) => inPosition(o.cx, o.cy, want.position!, width, height));
      add(
        `objects[${i}]: ${name} at ${want.position}`,
        found.length > 0 && inside.length >= needed,
        `${inside.length} of ${found.length} there: ${listFound(found)}`,
      );
    }
  });

  for (const { a, rel, b } of expect.relations ?? []) {
    const wantA = expect.objects[a]!;
    const wantB = expect.objects[b]!;
    // GenEval-style leniency: the relation holds when any matching pair of distinct objects satisfies it.
    const pass = matched[a]!.some((x) => matched[b]!.some((y) => x !== y && holdsRelation(x, y, rel)));
    add(
      `relations: ${describeObject(wantA)} ${REL_WORDS[rel]} ${describeObject(wantB)}`,
      pass,
      `a: ${listFound(matched[a]!)} | b: ${listFound(matched[b]!)}`,
    );
  }

  if (expect.exact_count) {
    const shapes = [...new Set(expect.objects.map((o) => o.shape))];
    for (const shape of shapes) {
      const expected = expect.objects.filter((o) => o.shape === shape).reduce((n, o) => n + (o.count ?? 1), 0);
      const found = detection.objects.filter((o) => o.shape === shape).length;
      add(`exact_count: ${expected} ${shape} in all`, found === expected, `found ${found}`);
    }
  }

  (expect.absent ?? []).forEach((want, i) => {
    const found = detection.objects.filter((o) => matches(o, want));
    add(`absent[${i}]: no ${describeObject(want)}`, found.length === 0, `found ${listFound(found)}`);
  });

  for (const field of ["background", "style", "lighting"] as const) {
    const want = expect[field];
    if (want === undefined) continue;
    add(`${field}: ${want}`, detection[field] === want, `detected ${detection[field]}`);
  }

  return { pass: clauses.every((c) => c.pass), clauses };
}
