/** Touching neighbours (src/agent/separation.ts), on images of the shapes world's own renderer. */
import { describe, expect, it } from "vitest";
import { type Instance, layoutScene, positionAt, SIZE_RADIUS } from "../evals/layout.ts";
import { renderScene } from "../evals/render.ts";
import { createRng } from "../evals/rng.ts";
import { sampleScene } from "../evals/sample.ts";
import type { Scene } from "../evals/scene.ts";
import { separation } from "../src/agent/separation.ts";

const occupiedCells = (instances: readonly Instance[]) => instances.map((o) => positionAt(o.cx, o.cy));

describe("separation", () => {
  it("finds no touching pair in rendered scenes (the layout keeps neighbours apart)", () => {
    const rng = createRng(11);
    for (let i = 0; i < 300; i++) {
      const scene = sampleScene(rng);
      const layout = layoutScene(scene, i);
      expect(separation(renderScene(scene, layout, i), occupiedCells(layout.instances)).touching).toEqual([]);
    }
  });

  it("finds two large squares pushed into each other, in every style and on every background", () => {
    for (const style of ["flat", "outline", "watercolor"] as const)
      for (const background of ["white", "black", "gray", "sky"] as const) {
        const scene: Scene = {
          objects: [{ shape: "square", color: "red", size: "large", count: 2, placement: { kind: "free" } }],
          background,
          style,
          lighting: "daylight",
        };
        const square = (cell: number, cx: number, cy: number): Instance => ({
          group: 0,
          shape: "square",
          color: "red",
          size: "large",
          cell,
          cx,
          cy,
          radius: SIZE_RADIUS.large,
        });
        // Left cell and centre, 14 px apart: their 18.5 px boxes overlap. Below them, two apart.
        const instances = [square(3, 18, 32), square(4, 32, 32), square(6, 10.5, 53.5), square(7, 32, 53.5)];
        const image = renderScene(scene, { instances });
        expect(separation(image, occupiedCells(instances))).toEqual({
          pairs: 4,
          touching: [["left", "center"]],
        });
      }
  });
});
