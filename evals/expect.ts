/**
 * GenEval-style judging of one image's detection against a prompt's `expect` block (DESIGN.md, "Eval
 * prompt files"): every clause must hold for the image to pass.
 */
import { invalid } from "../src/errors.ts";
import type { DetectedObject, Detection } from "./detector.ts";
import type { PromptExpect } from "./language/prompt-file.ts";
import { type Layout, layoutScene, relationHolds } from "./layout.ts";
import { createRng, deriveSeed, type Rng } from "./rng.ts";
import {
  BACKGROUNDS,
  COLORS,
  type Color,
  LIGHTINGS,
  POSITIONS,
  type Position,
  type Relation,
  type Scene,
  SceneSchema,
  type Shape,
  SIZES,
  type Size,
  STYLES,
} from "./scene.ts";

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
  return found
    .map((o) => `${o.size} ${o.color} ${o.shape} at (${o.cx.toFixed(1)}, ${o.cy.toFixed(1)})`)
    .join("; ");
}

/** Whether a centre lies in a cell of the 3×3 grid, widened by POSITION_MARGIN on each side. */
export function inPosition(
  cx: number,
  cy: number,
  position: Position,
  width: number,
  height: number,
): boolean {
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
      add(
        `objects[${i}]: exactly ${want.count} ${name}`,
        found.length === want.count,
        `found ${found.length}`,
      );
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
      const expected = expect.objects
        .filter((o) => o.shape === shape)
        .reduce((n, o) => n + (o.count ?? 1), 0);
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

/** What a perfect detector reports for a rendered scene: the layout's instances as placed. */
export function truthDetection(scene: Scene, layout: Layout): Detection {
  return {
    objects: layout.instances.map((instance) => {
      // The star's bounding box is a little shorter than it is wide (render.ts).
      const rx = instance.radius;
      const ry = instance.shape === "star" ? 0.951 * instance.radius : instance.radius;
      return {
        shape: instance.shape,
        color: instance.color,
        size: instance.size,
        cx: instance.cx,
        cy: instance.cy,
        bbox: [
          Math.floor(instance.cx - rx),
          Math.floor(instance.cy - ry),
          Math.ceil(instance.cx + rx) - 1,
          Math.ceil(instance.cy + ry) - 1,
        ],
      };
    }),
    background: scene.background,
    style: scene.style,
    lighting: scene.lighting,
  };
}

/** Distinct grid cells for the objects with a position or a relation, in a seeded search order. */
function assignCells(expect: Expect, rng: Rng): Map<number, number> | null {
  const relations = expect.relations ?? [];
  const placed = expect.objects
    .map((_, i) => i)
    .filter(
      (i) => expect.objects[i]!.position !== undefined || relations.some((r) => r.a === i || r.b === i),
    );
  const cells = new Map<number, number>();
  const orders = placed.map(() => rng.shuffle(POSITIONS.map((_, cell) => cell)));
  const search = (depth: number): boolean => {
    if (depth === placed.length) {
      return relations.every((r) => relationHolds(r.rel, cells.get(r.a)!, cells.get(r.b)!));
    }
    const index = placed[depth]!;
    const position = expect.objects[index]!.position;
    for (const cell of orders[depth]!) {
      if (position !== undefined && POSITIONS[cell] !== position) continue;
      if ([...cells.values()].includes(cell)) continue;
      cells.set(index, cell);
      if (search(depth + 1)) return true;
      cells.delete(index);
    }
    return false;
  };
  return search(0) ? cells : null;
}

const SCENE_TRIES = 200;

/**
 * A world scene that satisfies an expectation (for `--mode oracle`): the asked objects with the unasked
 * attributes drawn from the seed, related and positioned objects on grid cells that meet every clause.
 * Draws until the scene's ground truth, laid out with the same seed (`layoutScene(scene, seed)`), passes
 * `judge` (an unasked colour could, say, add to a count or hit an `absent` clause); throws when none does.
 */
export function sceneForExpect(expect: Expect, seed: number): Scene {
  const rng = createRng(deriveSeed(seed, 0xe8ec));
  for (let attempt = 0; attempt < SCENE_TRIES; attempt++) {
    const cells = assignCells(expect, rng);
    if (!cells) break;
    const scene: Scene = {
      objects: expect.objects.map((want, i) => {
        const cell = cells.get(i);
        return {
          shape: want.shape,
          color: want.color ?? rng.pick(COLORS),
          size: want.size ?? rng.pick(SIZES),
          count: want.count ?? 1,
          placement:
            cell === undefined
              ? { kind: "free" as const }
              : { kind: "grid" as const, position: POSITIONS[cell]! },
        };
      }),
      background: expect.background ?? rng.pick(BACKGROUNDS),
      style: expect.style ?? rng.pick(STYLES),
      lighting: expect.lighting ?? rng.pick(LIGHTINGS),
    };
    if (!SceneSchema.safeParse(scene).success) continue;
    if (judge(expect, truthDetection(scene, layoutScene(scene, seed))).pass) return scene;
  }
  throw invalid("expect", "no shapes-world scene satisfies this expectation");
}
