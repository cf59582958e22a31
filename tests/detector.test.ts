import { describe, expect, it } from "vitest";
import { detect } from "../evals/detector.ts";
import { detectorReport } from "../evals/harness.ts";
import { layoutScene } from "../evals/layout.ts";
import { renderScene } from "../evals/render.ts";
import { BACKGROUNDS, LIGHTINGS, type Scene, STYLES } from "../evals/scene.ts";
import { createImage } from "../pipelines/image.ts";

describe("oracle detector", () => {
  it("reaches ≥ 99 % on every attribute over 300 random rendered scenes", () => {
    const report = detectorReport(300, 4242);
    for (const attribute of [
      "shape",
      "color",
      "size",
      "count",
      "position",
      "background",
      "style",
      "lighting",
    ]) {
      const entry = report.attributes[attribute]!;
      expect(entry.total, attribute).toBeGreaterThanOrEqual(300);
      expect(entry.accuracy, attribute).toBeGreaterThanOrEqual(0.99);
    }
    // The sampler covers the vocabulary, so every row of every table is exercised.
    expect(Object.keys(report.attributes.shape!.confusion).length).toBeGreaterThanOrEqual(6);
    expect(Object.keys(report.attributes.color!.confusion).length).toBeGreaterThanOrEqual(7);
  });

  it("recovers a hand-made scene exactly, in every style, background and lighting", () => {
    for (const style of STYLES) {
      for (const background of BACKGROUNDS) {
        for (const lighting of LIGHTINGS) {
          const scene: Scene = {
            objects: [
              {
                shape: "star",
                color: "yellow",
                size: "small",
                count: 1,
                placement: { kind: "grid", position: "top_left" },
              },
              {
                shape: "cross",
                color: "purple",
                size: "large",
                count: 1,
                placement: { kind: "grid", position: "center" },
              },
              { shape: "triangle", color: "orange", size: "medium", count: 2, placement: { kind: "free" } },
            ],
            background,
            style,
            lighting,
          };
          const layout = layoutScene(scene, 9);
          const detection = detect(renderScene(scene, layout, 9));
          const where = `${style} ${background} ${lighting}`;
          expect(
            { background: detection.background, style: detection.style, lighting: detection.lighting },
            where,
          ).toEqual({
            background,
            style,
            lighting,
          });
          const got = detection.objects.map((o) => `${o.size} ${o.color} ${o.shape}`).sort();
          expect(got, where).toEqual([
            "large purple cross",
            "medium orange triangle",
            "medium orange triangle",
            "small yellow star",
          ]);
          for (const instance of layout.instances) {
            const nearest = Math.min(
              ...detection.objects.map((o) => Math.hypot(o.cx - instance.cx, o.cy - instance.cy)),
            );
            expect(nearest, where).toBeLessThan(1);
          }
        }
      }
    }
  });

  it("finds no objects on a bare background", () => {
    const image = createImage(64, 64);
    image.data.fill(20);
    expect(detect(image)).toEqual({ objects: [], background: "black", style: "flat", lighting: "daylight" });
  });
});
