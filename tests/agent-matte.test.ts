/**
 * Scene-only edits composed from the session image (src/agent/matte.ts), on images of the shapes world's
 * own renderer, read back by the evaluator's detector.
 */
import { describe, expect, it } from "vitest";
import { detect } from "../evals/detector.ts";
import { layoutScene, positionAt } from "../evals/layout.ts";
import { renderScene } from "../evals/render.ts";
import { createRng } from "../evals/rng.ts";
import { sampleScene } from "../evals/sample.ts";
import { BACKGROUNDS, LIGHTINGS, POSITIONS, type Scene } from "../evals/scene.ts";
import { cellMask } from "../src/agent/edit-strategy.ts";
import {
  foregroundCoverage,
  lightingGain,
  relight,
  replaceBackground,
  transplant,
} from "../src/agent/matte.ts";

const objectsOf = (
  scene: Scene,
  layoutSeed: number,
  image = renderScene(scene, layoutScene(scene, layoutSeed), layoutSeed),
) =>
  detect(image)
    .objects.map((o) => `${o.size} ${o.color} ${o.shape} @${positionAt(o.cx, o.cy)}`)
    .sort();

describe("matte", () => {
  it("covers nothing of an empty plate and the whole of an object's core", () => {
    const scene: Scene = {
      objects: [
        {
          shape: "square",
          color: "blue",
          size: "large",
          count: 1,
          placement: { kind: "grid", position: "center" },
        },
      ],
      background: "sky",
      style: "flat",
      lighting: "daylight",
    };
    const coverage = foregroundCoverage(renderScene(scene, layoutScene(scene, 1), 1));
    expect(coverage[32 * 64 + 32]).toBeGreaterThan(0.95);
    expect(coverage[2 * 64 + 2]).toBe(0);
    expect(coverage[60 * 64 + 60]).toBe(0);
  });

  it("puts a scene's objects over another background: the detector reads the same objects on the new one", () => {
    const rng = createRng(5);
    let same = 0;
    const n = 120;
    for (let i = 0; i < n; i++) {
      const scene = sampleScene(rng);
      const background =
        BACKGROUNDS[(BACKGROUNDS.indexOf(scene.background) + 1 + (i % 3)) % BACKGROUNDS.length]!;
      const after = { ...scene, background };
      // The generated image: the new background with objects of its own elsewhere (another layout).
      const generated = renderScene(after, layoutScene(after, i + 1000), i + 1000);
      const composed = replaceBackground(renderScene(scene, layoutScene(scene, i), i), generated);
      const read = detect(composed);
      expect(read.background).toBe(background);
      if (JSON.stringify(objectsOf(after, i, composed)) === JSON.stringify(objectsOf(after, i))) same++;
    }
    expect(same / n).toBeGreaterThan(0.95);
  });

  it("relights a scene by the gain read from a rendering under the new light (none over black)", () => {
    const rng = createRng(6);
    let same = 0;
    let relit = 0;
    for (let i = 0; i < 120; i++) {
      const scene = sampleScene(rng);
      const lighting = LIGHTINGS[(LIGHTINGS.indexOf(scene.lighting) + 1 + (i % 2)) % LIGHTINGS.length]!;
      const after = { ...scene, lighting };
      const generated = renderScene(after, layoutScene(after, i + 1000), i + 1000);
      const session = renderScene(scene, layoutScene(scene, i), i);
      const gain = lightingGain(session, generated);
      if (scene.background === "black") {
        expect(gain).toBeNull();
        continue;
      }
      relit++;
      const image = relight(session, gain!);
      expect(detect(image)).toMatchObject({ lighting, background: scene.background });
      if (JSON.stringify(objectsOf(after, i, image)) === JSON.stringify(objectsOf(after, i))) same++;
    }
    expect(same / relit).toBeGreaterThan(0.95);
  });

  it("transplants a cell: the object drawn there replaces the cell's content, every other pixel stays", () => {
    const rng = createRng(7);
    let same = 0;
    const n = 120;
    for (let i = 0; i < n; i++) {
      const scene = sampleScene(rng);
      const layout = layoutScene(scene, i);
      const [moved, ...rest] = layout.instances;
      // The generated image: the same world with only the moved object, drawn in the first free cell.
      const free = [...Array(9).keys()].find((c) => !layout.instances.some((o) => o.cell === c))!;
      const col = free % 3;
      const row = Math.floor(free / 3);
      const drawn = { ...moved!, cell: free, cx: (col + 0.5) * (64 / 3), cy: (row + 0.5) * (64 / 3) };
      const generated = renderScene(scene, { instances: [drawn] }, i + 1000);
      const session = renderScene(scene, layout, i);
      const region = cellMask([POSITIONS[free]!, POSITIONS[moved!.cell]!], 64, 64);
      const image = transplant(session, generated, region);
      for (let p = 0; p < 64 * 64; p++)
        if (region.data[p] === 0)
          for (let c = 0; c < 3; c++) expect(image.data[p * 3 + c]).toBe(session.data[p * 3 + c]);
      const after = renderScene(scene, { instances: [...rest, drawn] }, i);
      if (JSON.stringify(objectsOf(scene, i, image)) === JSON.stringify(objectsOf(scene, i, after))) same++;
    }
    expect(same / n).toBeGreaterThan(0.95);
  });
});
