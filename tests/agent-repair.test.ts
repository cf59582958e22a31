/** Cell repair (src/agent/cell-repair.ts): which cells a critique round repaints, and under which plan. */
import { describe, expect, it } from "vitest";
import { POSITIONS, type Position, type Scene } from "../evals/scene.ts";
import { MAX_PASSES, planRepair } from "../src/agent/cell-repair.ts";
import type { CellReading } from "../src/agent/describer.ts";

type Seen = Partial<Record<Position, string>>;

/** Readings from "size color shape" per occupied cell; every other cell empty. */
function readings(seen: Seen): CellReading[] {
  return POSITIONS.map((position) => {
    const words = seen[position]?.split(" ");
    return words
      ? { position, size: words[0], color: words[1], shape: words[2], confidence: 0.9 }
      : { position, shape: null, color: "red", size: "small", confidence: 0.9 };
  }) as CellReading[];
}

const scene = (objects: Scene["objects"]): Scene => ({
  objects,
  background: "white",
  style: "flat",
  lighting: "daylight",
});
const redStarTopLeft = {
  shape: "star",
  color: "red",
  size: "large",
  count: 1,
  placement: { kind: "grid", position: "top_left" },
} as const;
const threeBlueCircles = {
  shape: "circle",
  color: "blue",
  size: "large",
  count: 3,
  placement: { kind: "free" },
} as const;

describe("cell repair", () => {
  it("nothing to repair when every cell shows what the plan asks", () => {
    const target = scene([redStarTopLeft, threeBlueCircles]);
    const seen = readings({
      top_left: "large red star",
      center: "large blue circle",
      right: "large blue circle",
      bottom: "large blue circle",
    });
    expect(planRepair(target, seen)).toBeNull();
  });

  it("draws a missing or wrong grid object in its own cell, pinned there in the repair plan", () => {
    const target = scene([redStarTopLeft, threeBlueCircles]);
    const seen = { center: "large blue circle", right: "large blue circle", bottom: "large blue circle" };
    for (const topLeft of [undefined, "large green star", "small red star"]) {
      const repair = planRepair(target, readings({ ...seen, top_left: topLeft }))!;
      expect(repair.cells).toEqual(["top_left"]);
      expect(repair.passes).toHaveLength(1);
      expect(repair.passes[0]!.cells).toEqual(["top_left"]);
      expect(repair.passes[0]!.scene.objects).toEqual([redStarTopLeft]);
      expect(repair.passes[0]!.scene).toMatchObject({
        background: "white",
        style: "flat",
        lighting: "daylight",
      });
    }
  });

  it("adds a missing instance in an empty cell, keeping the ones already there, and erases extras", () => {
    const target = scene([redStarTopLeft, threeBlueCircles]);
    const seen = readings({
      top_left: "large red star",
      center: "large blue circle",
      right: "large blue circle",
      bottom: "large pink square",
    });
    const repair = planRepair(target, seen)!;
    // The third circle takes the square's cell: one repaint both adds the circle and erases the square.
    expect(repair.cells).toEqual(["bottom"]);
    expect(repair.passes.map((pass) => pass.scene.objects)).toEqual([
      [{ ...threeBlueCircles, count: 1, placement: { kind: "grid", position: "bottom" } }],
    ]);
    const tooMany = planRepair(
      target,
      readings({
        top_left: "large red star",
        top: "large blue circle",
        center: "large blue circle",
        right: "large blue circle",
        bottom: "large blue circle",
      }),
    )!;
    expect(tooMany.cells).toHaveLength(1);
    expect(tooMany.reason).toMatch(/^repaint erase /);
    // Nothing to draw: the plan names kept objects, which lie outside the repainted cell.
    expect(tooMany.passes).toHaveLength(1);
    expect(tooMany.passes[0]!.cells).toEqual(tooMany.cells);
    expect(tooMany.passes[0]!.scene.objects.map((o) => o.placement)).not.toContainEqual({
      kind: "grid",
      position: tooMany.cells[0],
    });
  });

  it("moves a relation partner to a cell where the relation holds: the same row, unless it is crowded", () => {
    const target = scene([
      { ...redStarTopLeft, placement: { kind: "grid", position: "center" } },
      {
        shape: "square",
        color: "yellow",
        size: "medium",
        count: 1,
        placement: { kind: "relation", relation: "left_of", of: 0 },
      },
    ]);
    const square = (position: Position) => ({
      ...target,
      objects: [{ ...target.objects[1]!, placement: { kind: "grid" as const, position } }],
    });
    // The left cell is next to the star; the top left is not (and is still left of it).
    const repair = planRepair(target, readings({ center: "large red star", right: "medium yellow square" }))!;
    expect(repair.cells).toEqual(["top_left", "right"]);
    expect(repair.passes).toEqual([{ cells: ["top_left", "right"], scene: square("top_left") }]);
    // With the other cells of the left column taken by planned objects, only the left cell remains.
    const column = (position: Position, color: "pink" | "orange") => ({
      ...redStarTopLeft,
      color,
      placement: { kind: "grid" as const, position },
    });
    const crowdedTarget = {
      ...target,
      objects: [...target.objects, column("top_left", "pink"), column("bottom_left", "orange")],
    };
    const crowded = planRepair(
      crowdedTarget,
      readings({
        center: "large red star",
        right: "medium yellow square",
        top_left: "large pink star",
        bottom_left: "large orange star",
      }),
    )!;
    expect(crowded.cells).toEqual(["left", "right"]);
    expect(crowded.passes[0]!.scene).toEqual(square("left"));
  });

  it("redraws a touching object, in an empty cell away from others when there is one", () => {
    const target = scene([threeBlueCircles]);
    const row = readings({
      bottom_left: "large blue circle",
      bottom: "large blue circle",
      bottom_right: "large blue circle",
    });
    expect(planRepair(target, row)).toBeNull();
    const repair = planRepair(target, row, { touching: ["bottom"] })!;
    expect(repair.reason).toBe("repaint large blue circle at top_left, erase bottom");
    // Nowhere to go: redrawn where it is.
    const full = readings(Object.fromEntries(POSITIONS.map((p) => [p, "large red star"])));
    const packed = planRepair(scene([{ ...redStarTopLeft, count: 9, placement: { kind: "free" } }]), full, {
      touching: ["center"],
    })!;
    expect(packed.reason).toBe("repaint large red star at center");
  });

  it("after a failed attempt in a cell, an object placed anywhere is tried in another cell", () => {
    const target = scene([threeBlueCircles]);
    const seen = readings({ center: "large blue circle", right: "large blue circle" });
    const first = planRepair(target, seen)!;
    const [cell] = first.cells;
    const second = planRepair(target, seen, { failed: [{ ...threeBlueCircles, position: cell! }] })!;
    expect(second.cells).toHaveLength(1);
    expect(second.cells[0]).not.toBe(cell);
    // A grid position has no other cell: it is tried there again.
    const star = scene([redStarTopLeft]);
    expect(
      planRepair(star, readings({}), { failed: [{ ...redStarTopLeft, position: "top_left" }] })!.cells,
    ).toEqual(["top_left"]);
  });

  it("an edit puts objects back in the cells they had in the session image", () => {
    const target = scene([threeBlueCircles]);
    const home = readings({
      top: "large blue circle",
      center: "large blue circle",
      bottom: "large blue circle",
    });
    const now = readings({
      top: "large blue circle",
      center: "large blue circle",
      left: "large blue circle",
    });
    expect(planRepair(target, now)).toBeNull();
    const repair = planRepair(target, now, { home })!;
    expect(repair.cells).toEqual(["left", "bottom"]);
    expect(repair.reason).toBe("repaint large blue circle at bottom, erase left");
  });

  it("draws one object per pass, at most MAX_PASSES", () => {
    const target = scene([
      { ...threeBlueCircles, count: 3 },
      { ...threeBlueCircles, shape: "square", color: "pink", count: 3 },
    ]);
    const repair = planRepair(target, readings({}))!;
    expect(repair.passes).toHaveLength(MAX_PASSES);
    repair.passes.forEach((pass) => {
      expect(pass.scene.objects).toHaveLength(1);
      const { position } = pass.scene.objects[0]!.placement as { position: Position };
      expect(pass.cells).toEqual([position]);
    });
    // The other objects wait for the next round.
    expect(repair.cells).toHaveLength(MAX_PASSES);
  });
});
