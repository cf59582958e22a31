/**
 * How an edit keeps what the user did not ask to change, chosen from the diff of the session's plan and the
 * edit's plan:
 *
 * - `inpaint`: only objects changed (recoloured, reshaped, resized, recounted, added, removed or moved) and
 *   nothing else did. Grid-placed objects live in known cells of the 3×3 grid (evals/layout.ts); objects the
 *   plan places freely or by relation are found in the cells where the describer reads their shape and colour
 *   in the session image, and objects the edit adds get the cells it reads as empty. The mask is exactly
 *   those cells; every other pixel is kept bit for bit, under the same seed. When the describer reads cells,
 *   the engine starts such an edit with a cell repair of the session image towards the new plan instead
 *   (cell-repair.ts), which repaints these cells and any the session image already had wrong.
 * - `compose`: only the background or the lighting (or both) changed. The new plan is rendered with the
 *   session's seed and sampler, and lends the session image what changed (matte.ts): its light, as a gain
 *   per channel read from the two images' background plates, and its background, under the session image's
 *   objects cut out by their matte. The objects are the session image's own pixels. Measured on the 66 edit
 *   dialogues (`atelier eval --mode agent --categories edit`, 2 images per prompt, seed 1): preservation
 *   71.4 % → 84.1 % of 126 untouched objects (lighting edits keep 33 of 33 instead of 24, background edits
 *   19 of 28 instead of 12), edit accuracy 57.6 → 59.1 %. Over a black background the light cannot be read
 *   and the rendering is taken as it is.
 * - `regenerate`: the style changed (alone or with the background or lighting). txt2img of the new plan with
 *   the session's seed and sampler: the same objects under the same starting noise.
 * - `img2img`: anything else (a mix of object and scene changes, a changed object that anchors a relation,
 *   a changed object the describer cannot find, or no visible change), from the previous image with the
 *   same seed.
 *
 * Regenerate rather than the layout lock (the previous plan's C_tokens with the new c_global, primer
 * "Multi-Stream Conditioning") for a global change, measured with the session-2 models on the 66 edit
 * dialogues of evals/prompts/shapes-geneval.jsonl (`atelier eval --mode agent`, seed 1): edit accuracy 0.212
 * vs 0.136 with the lock (img2img at strength 0.8: 0.182), preservation 14 vs 16 of 30 untouched objects.
 * The lock kept the old background: these models read the background from the object tokens as much as
 * from c_global. Both locks stay available as the edit request's `lock` option. Finding free objects with
 * the describer (21 of the 66 dialogues' last edits; img2img at strength 0.6 before) left edit accuracy at
 * 0.212 and kept 15 of 26 untouched objects (14 of 30 with img2img).
 */
import { diffScenes } from "../../evals/language/revision.ts";
import { GRID } from "../../evals/layout.ts";
import {
  type Color,
  type ObjectGroup,
  POSITIONS,
  type Position,
  type Scene,
  type Shape,
} from "../../evals/scene.ts";
import type { Mask } from "../../pipelines/image.ts";
import type { Stay } from "./critic.ts";
import type { CellReading } from "./describer.ts";

export type EditStrategy =
  | { kind: "inpaint"; cells: Position[]; reason: string }
  | { kind: "compose"; changes: ("background" | "lighting")[]; reason: string }
  | { kind: "regenerate"; reason: string }
  | { kind: "img2img"; reason: string };

/** What an object group is, independent of its index (a relation names its anchor by what it is). */
function groupKey(scene: Scene, group: ObjectGroup): string {
  const what = (g: ObjectGroup) => `${g.size} ${g.color} ${g.shape} ×${g.count}`;
  const p = group.placement;
  if (p.kind === "relation") return `${what(group)} ${p.relation} [${what(scene.objects[p.of]!)}]`;
  return `${what(group)} ${p.kind === "grid" ? `@${p.position}` : "anywhere"}`;
}

/** Grid-placed single objects by cell. */
function gridObjects(scene: Scene): Map<Position, string> {
  const cells = new Map<Position, string>();
  for (const group of scene.objects)
    if (group.placement.kind === "grid") cells.set(group.placement.position, groupKey(scene, group));
  return cells;
}

/** The grid objects that relation-placed groups are anchored to, by cell. */
function anchorCells(scene: Scene): Set<Position> {
  const cells = new Set<Position>();
  for (const group of scene.objects) {
    if (group.placement.kind !== "relation") continue;
    const anchor = scene.objects[group.placement.of]!.placement;
    if (anchor.kind === "grid") cells.add(anchor.position);
  }
  return cells;
}

/** Groups without a grid position (placed freely or by relation). */
function freeGroups(scene: Scene): ObjectGroup[] {
  return scene.objects.filter((g) => g.placement.kind !== "grid");
}

/** Whether the edit changes objects without a grid position (then the strategy wants the describer's reading). */
export function changesFreeObjects(before: Scene, after: Scene): boolean {
  const keys = (s: Scene) =>
    freeGroups(s)
      .map((g) => groupKey(s, g))
      .sort()
      .join("; ");
  return keys(before) !== keys(after);
}

/** What the describer read in each grid cell of the session image (describer.ts CellReading). */
export type CellReadings = readonly { position: Position; shape: Shape | null; color: Color }[];

/**
 * The cells to repaint when groups without a grid position change: where the describer reads each group
 * the edit changes or removes, plus cells it reads as empty when the edit adds more objects than those
 * cells hold. Null when a changed group is not found or there is no room: the caller falls back to img2img.
 */
function locateFreeChanges(before: Scene, after: Scene, readings: CellReadings): Position[] | null {
  const keysAfter = new Set(freeGroups(after).map((g) => groupKey(after, g)));
  const keysBefore = new Set(freeGroups(before).map((g) => groupKey(before, g)));
  const gone = freeGroups(before).filter((g) => !keysAfter.has(groupKey(before, g)));
  const come = freeGroups(after).filter((g) => !keysBefore.has(groupKey(after, g)));
  const cells = new Set<Position>();
  for (const group of gone) {
    const found = readings.filter((r) => r.shape === group.shape && r.color === group.color);
    if (found.length === 0) return null;
    for (const r of found) cells.add(r.position);
  }
  const needed = come.reduce((n, g) => n + g.count, 0);
  if (needed > cells.size) {
    const taken = new Set([...gridObjects(before).keys(), ...gridObjects(after).keys()]);
    const empty = readings.filter((r) => r.shape === null && !taken.has(r.position));
    if (cells.size + empty.length < needed) return null;
    for (const r of empty) cells.add(r.position);
  }
  return POSITIONS.filter((p) => cells.has(p));
}

/**
 * Picks the edit strategy for going from `before` (the session's plan) to `after` (the edit's plan);
 * `readings`, the describer's reading of the session image, lets it find objects without a grid position.
 */
export function chooseEditStrategy(before: Scene, after: Scene, readings?: CellReadings): EditStrategy {
  // The edit's plan is the target: read the other way, a group placed anywhere that the edit pins to a cell
  // ("let the square sit in the lower left") is no change, since "anywhere" accepts every cell.
  const diff = diffScenes(after, before);
  const scene = (["background", "style", "lighting"] as const).filter((f) => before[f] !== after[f]);
  const gridBefore = gridObjects(before);
  const gridAfter = gridObjects(after);
  const cells = POSITIONS.filter((p) => gridBefore.get(p) !== gridAfter.get(p));
  const freeChanged = changesFreeObjects(before, after);
  const objectsChanged = cells.length > 0 || freeChanged;
  if (diff.issues.length === 0) return { kind: "img2img", reason: "the plan did not change" };
  const composable = scene.filter((f): f is "background" | "lighting" => f !== "style");
  if (!objectsChanged && composable.length > 0 && composable.length === scene.length)
    return {
      kind: "compose",
      changes: composable,
      reason: `only the ${composable.join(" and ")} changed: the same objects, composed`,
    };
  if (!objectsChanged)
    return { kind: "regenerate", reason: `only the ${scene.join(", ")} changed: same objects, same seed` };
  if (scene.length > 0)
    return { kind: "img2img", reason: `objects and the ${scene.join(", ")} changed together` };
  const anchors = new Set([...anchorCells(before), ...anchorCells(after)]);
  if (cells.some((c) => anchors.has(c)))
    return { kind: "img2img", reason: "a changed object anchors a relation" };
  if (freeChanged) {
    const located = readings && locateFreeChanges(before, after, readings);
    if (!located) return { kind: "img2img", reason: "objects without a grid position changed" };
    const all = POSITIONS.filter((p) => cells.includes(p) || located.includes(p));
    return {
      kind: "inpaint",
      cells: all,
      reason: `objects without a grid position changed: the describer places them at ${located.join(", ")}`,
    };
  }
  return {
    kind: "inpaint",
    cells,
    reason: `only the grid object${cells.length > 1 ? "s" : ""} at ${cells.join(", ")} changed`,
  };
}

/**
 * The objects an edit leaves alone, where the describer reads them in the session image: every cell that
 * shows a group the edit does not change (same shape, colour, size, count and placement), when the reading
 * holds no more of that group than the plan. The critic checks that they stay (critic.ts `stay`).
 */
export function stayingObjects(before: Scene, after: Scene, home: readonly CellReading[]): Stay[] {
  const unchanged = new Set(after.objects.map((g) => groupKey(after, g)));
  const stay: Stay[] = [];
  for (const group of before.objects) {
    if (!unchanged.has(groupKey(before, group))) continue;
    const seen = home.filter((r) => r.shape === group.shape && r.color === group.color);
    if (seen.length > group.count) continue;
    for (const r of seen) stay.push({ position: r.position, shape: group.shape, color: group.color });
  }
  return stay;
}

/** Repaint mask (255) of whole grid cells, for an image of any size (cells are thirds of each side). */
export function cellMask(cells: readonly Position[], width: number, height: number): Mask {
  const data = new Uint8Array(width * height);
  for (const position of cells) {
    const index = POSITIONS.indexOf(position);
    const row = Math.floor(index / GRID);
    const col = index % GRID;
    const x0 = Math.floor((col * width) / GRID);
    const x1 = Math.ceil(((col + 1) * width) / GRID);
    const y0 = Math.floor((row * height) / GRID);
    const y1 = Math.ceil(((row + 1) * height) / GRID);
    for (let y = y0; y < y1; y++) data.fill(255, y * width + x0, y * width + x1);
  }
  return { width, height, data };
}
