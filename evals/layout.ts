/**
 * Layout: where every object of a scene goes on the 64×64 canvas.
 *
 * The canvas is a 3×3 grid of cells and every instance gets a cell of its own, so objects never overlap
 * (scene.ts caps a scene at 9 objects). Semantics shared with the evaluator: an object is "at top left" when
 * its centre lies in that third of the canvas, and relations compare centres ("A left_of B": A.cx < B.cx).
 * The layout keeps relation partners in distinct columns (left/right) or rows (above/below), preferring the
 * same row or column, so a relation never hinges on the jitter.
 */
import { invalid } from "../src/errors.ts";
import { createRng, deriveSeed, type Rng } from "./rng.ts";
import {
  type Color,
  POSITIONS,
  type Position,
  type Relation,
  type Scene,
  type Shape,
  type Size,
} from "./scene.ts";

export const CANVAS = 64;
export const GRID = 3;
export const CELL = CANVAS / GRID;

/** Half the side of an instance's bounding box, in pixels, by size. */
export const SIZE_RADIUS: Record<Size, number> = { small: 4.5, medium: 7, large: 9.25 };
/** Centres move at most this far from their cell's centre (less for large shapes, which must stay inside). */
export const MAX_JITTER = 1.5;
/** Clearance kept between a shape's bounding box and its cell border, so neighbours stay ≥ 1.8 px apart. */
const CELL_MARGIN = 0.9;
/** Centres are quantised to 1/8 px so that renderers can cache coverage masks per sub-pixel phase. */
export const SUBPIXEL = 8;

export interface Instance {
  /** Index of the object group in `scene.objects`. */
  group: number;
  shape: Shape;
  color: Color;
  size: Size;
  /** Grid cell, row-major from the top left (0..8). */
  cell: number;
  /** Centre in pixels (x to the right, y down), multiples of 1/SUBPIXEL. */
  cx: number;
  cy: number;
  /** Half the side of the bounding box, in pixels. */
  radius: number;
}

export interface Layout {
  instances: Instance[];
}

const cellRow = (cell: number) => Math.floor(cell / GRID);
const cellCol = (cell: number) => cell % GRID;

/** True when a cell for A satisfies "A <relation> B" given B's cell. */
export function relationHolds(relation: Relation, cellA: number, cellB: number): boolean {
  switch (relation) {
    case "left_of":
      return cellCol(cellA) < cellCol(cellB);
    case "right_of":
      return cellCol(cellA) > cellCol(cellB);
    case "above":
      return cellRow(cellA) < cellRow(cellB);
    case "below":
      return cellRow(cellA) > cellRow(cellB);
  }
}

/** Same row for left/right, same column for above/below: the unambiguous arrangement. */
function preferred(relation: Relation, cellA: number, cellB: number): boolean {
  return relation === "left_of" || relation === "right_of"
    ? cellRow(cellA) === cellRow(cellB)
    : cellCol(cellA) === cellCol(cellB);
}

/** The grid position whose third of the canvas contains a point. */
export function positionAt(cx: number, cy: number): Position {
  const col = Math.min(GRID - 1, Math.max(0, Math.floor(cx / CELL)));
  const row = Math.min(GRID - 1, Math.max(0, Math.floor(cy / CELL)));
  return POSITIONS[row * GRID + col]!;
}

interface RelationGroup {
  index: number;
  relation: Relation;
  of: number;
}

/**
 * Assigns cells to anchors and relation groups by depth-first search over seeded orderings; returns false
 * when no assignment exists. `cells[group]` is -1 for a group not yet placed.
 */
function solveRelations(
  rng: Rng,
  cells: number[],
  taken: boolean[],
  freeAnchors: number[],
  relations: RelationGroup[],
): boolean {
  const orderAll = (): number[] => rng.shuffle([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  const anchorOrders = freeAnchors.map(() => orderAll());
  const relationOrders = relations.map(() => orderAll());
  const placeRelation = (k: number): boolean => {
    if (k === relations.length) return true;
    const { index, relation, of } = relations[k]!;
    const anchorCell = cells[of]!;
    const order = relationOrders[k]!;
    // Preferred cells first, each pass in the seeded order.
    for (const wantPreferred of [true, false]) {
      for (const cell of order) {
        if (taken[cell] || !relationHolds(relation, cell, anchorCell)) continue;
        if (preferred(relation, cell, anchorCell) !== wantPreferred) continue;
        taken[cell] = true;
        cells[index] = cell;
        if (placeRelation(k + 1)) return true;
        taken[cell] = false;
        cells[index] = -1;
      }
    }
    return false;
  };
  const placeAnchor = (k: number): boolean => {
    if (k === freeAnchors.length) return placeRelation(0);
    const group = freeAnchors[k]!;
    for (const cell of anchorOrders[k]!) {
      if (taken[cell]) continue;
      taken[cell] = true;
      cells[group] = cell;
      if (placeAnchor(k + 1)) return true;
      taken[cell] = false;
      cells[group] = -1;
    }
    return false;
  };
  return placeAnchor(0);
}

/** Finds the relation group to blame for an unsatisfiable scene: the first that fails on its own. */
function blame(scene: Scene, cells: number[], taken: boolean[], relations: RelationGroup[]): number {
  for (const rel of relations) {
    const anchorCell = cells[rel.of]!;
    const anchorCells = anchorCell >= 0 ? [anchorCell] : [0, 1, 2, 3, 4, 5, 6, 7, 8].filter((c) => !taken[c]);
    const ok = anchorCells.some((b) =>
      [0, 1, 2, 3, 4, 5, 6, 7, 8].some((a) => a !== b && !taken[a] && relationHolds(rel.relation, a, b)),
    );
    if (!ok) return rel.index;
  }
  return relations[relations.length - 1]?.index ?? scene.objects.length - 1;
}

function quantise(value: number): number {
  return Math.round(value * SUBPIXEL) / SUBPIXEL;
}

/**
 * Places every instance of a (valid) scene. Deterministic in (scene, seed). Throws an AtelierError naming
 * `objects.N.placement` when the placements cannot all hold (two objects in one cell, a relation with no
 * free cell on the required side).
 */
export function layoutScene(scene: Scene, seed: number): Layout {
  const rng = createRng(deriveSeed(seed, 0x1a70));
  const groups = scene.objects;
  const cells: number[] = groups.map(() => -1);
  const taken: boolean[] = new Array(GRID * GRID).fill(false);
  const owner: number[] = new Array(GRID * GRID).fill(-1);

  groups.forEach((group, index) => {
    if (group.placement.kind !== "grid") return;
    const cell = POSITIONS.indexOf(group.placement.position);
    if (taken[cell]) {
      throw invalid(
        `objects.${index}.placement`,
        `position ${group.placement.position} is already taken by objects.${owner[cell]}`,
      );
    }
    taken[cell] = true;
    owner[cell] = index;
    cells[index] = cell;
  });

  const relations: RelationGroup[] = [];
  const freeAnchors: number[] = [];
  groups.forEach((group, index) => {
    const placement = group.placement;
    if (placement.kind !== "relation") return;
    relations.push({ index, relation: placement.relation, of: placement.of });
    if (groups[placement.of]?.placement.kind === "free" && !freeAnchors.includes(placement.of)) {
      freeAnchors.push(placement.of);
    }
  });

  if (relations.length > 0 && !solveRelations(rng, cells, taken, freeAnchors, relations)) {
    const index = blame(scene, cells, taken, relations);
    const placement = groups[index]!.placement;
    const what = placement.kind === "relation" ? `${placement.relation} objects.${placement.of}` : "placed";
    throw invalid(`objects.${index}.placement`, `no free cell lets this object be ${what}`);
  }

  const free = rng.shuffle([0, 1, 2, 3, 4, 5, 6, 7, 8].filter((cell) => !taken[cell]));
  const instances: Instance[] = [];
  groups.forEach((group, index) => {
    const radius = SIZE_RADIUS[group.size];
    const jitter = Math.min(MAX_JITTER, CELL / 2 - radius - CELL_MARGIN);
    const groupCells = cells[index]! >= 0 ? [cells[index]!] : [];
    while (groupCells.length < group.count) {
      const cell = free.pop();
      if (cell === undefined) throw invalid("objects", "more objects than grid cells");
      groupCells.push(cell);
    }
    for (const cell of groupCells) {
      const cx = (cellCol(cell) + 0.5) * CELL + (rng.next() * 2 - 1) * jitter;
      const cy = (cellRow(cell) + 0.5) * CELL + (rng.next() * 2 - 1) * jitter;
      instances.push({
        group: index,
        shape: group.shape,
        color: group.color,
        size: group.size,
        cell,
        cx: quantise(cx),
        cy: quantise(cy),
        radius,
      });
    }
  });
  return { instances };
}
