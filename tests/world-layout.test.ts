import { describe, expect, it } from "vitest";
import { CELL, GRID, layoutScene, positionAt } from "../evals/layout.ts";
import { createRng } from "../evals/rng.ts";
import { sampleScene } from "../evals/sample.ts";
import { POSITIONS, parseScene, type Scene } from "../evals/scene.ts";
import { AtelierError } from "../src/errors.ts";

const one = (shape: string, placement: object) => ({
  shape,
  color: "red",
  size: "large",
  count: 1,
  placement,
});
const scene = (objects: object[]): Scene =>
  parseScene({ objects, background: "white", style: "flat", lighting: "daylight" });

describe("layoutScene", () => {
  it("keeps objects apart, in distinct cells, and honours positions and relations on 2,000 random scenes", () => {
    const rng = createRng(2024);
    let relations = 0;
    for (let k = 0; k < 2000; k++) {
      const s = sampleScene(rng);
      const layout = layoutScene(s, k);
      const { instances } = layout;
      expect(instances.length).toBe(s.objects.reduce((sum, g) => sum + g.count, 0));
      expect(new Set(instances.map((i) => i.cell)).size).toBe(instances.length);
      for (const inst of instances) {
        // The bounding box stays inside the instance's own cell, so no two boxes can meet.
        const col = inst.cell % GRID;
        const row = Math.floor(inst.cell / GRID);
        expect(inst.cx - inst.radius).toBeGreaterThanOrEqual(col * CELL + 0.5);
        expect(inst.cx + inst.radius).toBeLessThanOrEqual((col + 1) * CELL - 0.5);
        expect(inst.cy - inst.radius).toBeGreaterThanOrEqual(row * CELL + 0.5);
        expect(inst.cy + inst.radius).toBeLessThanOrEqual((row + 1) * CELL - 0.5);
        const group = s.objects[inst.group]!;
        expect([inst.shape, inst.color, inst.size]).toEqual([group.shape, group.color, group.size]);
        if (group.placement.kind === "grid")
          expect(positionAt(inst.cx, inst.cy)).toBe(group.placement.position);
      }
      for (let a = 0; a < instances.length; a++) {
        for (let b = a + 1; b < instances.length; b++) {
          const A = instances[a]!;
          const B = instances[b]!;
          const gap = Math.max(Math.abs(A.cx - B.cx), Math.abs(A.cy - B.cy)) - A.radius - B.radius;
          expect(gap).toBeGreaterThan(1.5);
        }
      }
      s.objects.forEach((group, index) => {
        if (group.placement.kind !== "relation") return;
        relations++;
        const A = instances.find((i) => i.group === index)!;
        const B = instances.find((i) => i.group === (group.placement as { of: number }).of)!;
        // Distinct columns/rows: the centres differ by far more than any evaluator margin.
        const margin = CELL - 3;
        const holds = {
          left_of: A.cx < B.cx - margin,
          right_of: A.cx > B.cx + margin,
          above: A.cy < B.cy - margin,
          below: A.cy > B.cy + margin,
        }[group.placement.relation];
        expect(holds).toBe(true);
      });
    }
    expect(relations).toBeGreaterThan(300);
  });

  it("prefers the same row for left/right and the same column for above/below", () => {
    const s = scene([
      one("star", { kind: "grid", position: "center" }),
      one("square", { kind: "relation", relation: "left_of", of: 0 }),
      one("circle", { kind: "relation", relation: "below", of: 0 }),
    ]);
    for (let seed = 0; seed < 20; seed++) {
      const [center, left, below] = layoutScene(s, seed).instances;
      expect(left!.cell).toBe(3);
      expect(below!.cell).toBe(7);
      expect(center!.cell).toBe(4);
    }
  });

  it("is deterministic in the seed and varies free placements with it", () => {
    const s = scene([{ ...one("star", { kind: "free" }), count: 3 }]);
    expect(layoutScene(s, 5)).toEqual(layoutScene(s, 5));
    const cells = new Set(Array.from({ length: 10 }, (_, seed) => JSON.stringify(layoutScene(s, seed))));
    expect(cells.size).toBeGreaterThan(5);
  });

  it("rejects unsatisfiable placements naming the object", () => {
    const twice = scene([
      one("star", { kind: "grid", position: "top" }),
      one("circle", { kind: "grid", position: "top" }),
    ]);
    expect(() => layoutScene(twice, 0)).toThrow(
      /objects\.1\.placement: position top is already taken by objects\.0/,
    );
    const leftOfLeft = scene([
      one("star", { kind: "grid", position: "bottom_left" }),
      one("square", { kind: "relation", relation: "left_of", of: 0 }),
    ]);
    try {
      layoutScene(leftOfLeft, 0);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AtelierError);
      expect((error as AtelierError).param).toBe("objects.1.placement");
    }
    // With the left column full, a right_of relation still finds a cell right of its anchor.
    const full = scene([
      one("star", { kind: "grid", position: POSITIONS[0] }),
      one("cross", { kind: "grid", position: POSITIONS[3] }),
      one("square", { kind: "grid", position: POSITIONS[6] }),
      one("circle", { kind: "relation", relation: "right_of", of: 0 }),
    ]);
    expect(layoutScene(full, 0).instances[3]!.cell % GRID).toBeGreaterThan(0);
  });
});
