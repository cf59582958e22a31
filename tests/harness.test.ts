import { describe, expect, it } from "vitest";
import type { DetectedObject, Detection } from "../evals/detector.ts";
import { detect } from "../evals/detector.ts";
import { type Expect, judge, sceneForExpect, truthDetection } from "../evals/expect.ts";
import { type Generator, runEval } from "../evals/harness.ts";
import { type EvalPrompt, parsePromptLine } from "../evals/language/prompt-file.ts";
import { layoutScene } from "../evals/layout.ts";
import { renderScene } from "../evals/render.ts";
import { type PromptResult, summarize } from "../evals/report.ts";
import type { Color, Scene, Shape } from "../evals/scene.ts";
import { createImage } from "../pipelines/image.ts";

/** A detected object of medium size (14 px box) centred at (cx, cy). */
function obj(shape: Shape, color: Color, cx: number, cy: number): DetectedObject {
  return { shape, color, size: "medium", cx, cy, bbox: [cx - 7, cy - 7, cx + 6, cy + 6] };
}

function scene(objects: DetectedObject[], extra: Partial<Detection> = {}): Detection {
  return { objects, background: "white", style: "flat", lighting: "daylight", ...extra };
}

const failing = (want: Expect, detection: Detection) =>
  judge(want, detection)
    .clauses.filter((c) => !c.pass)
    .map((c) => c.clause);

describe("judge: GenEval's rules, pass and fail per category", () => {
  it("single_object: the shape must be there", () => {
    const want: Expect = { objects: [{ shape: "circle" }] };
    expect(judge(want, scene([obj("circle", "red", 32, 32)])).pass).toBe(true);
    expect(judge(want, scene([obj("square", "red", 32, 32)])).pass).toBe(false);
    expect(judge(want, scene([])).pass).toBe(false);
  });

  it("single_object with a size: a large circle is not a medium one", () => {
    const want: Expect = { objects: [{ shape: "circle", size: "medium" }] };
    expect(judge(want, scene([obj("circle", "red", 32, 32)])).pass).toBe(true);
    expect(judge(want, scene([{ ...obj("circle", "red", 32, 32), size: "large" }])).pass).toBe(false);
  });

  it("two_objects: both must be there", () => {
    const want: Expect = { objects: [{ shape: "star" }, { shape: "cross" }] };
    expect(judge(want, scene([obj("star", "red", 10, 10), obj("cross", "blue", 50, 50)])).pass).toBe(true);
    expect(failing(want, scene([obj("star", "red", 10, 10)]))).toEqual(["objects[1]: a cross"]);
  });

  it("counting: exactly the asked number, not fewer, not more", () => {
    const want: Expect = { objects: [{ shape: "star", color: "yellow", count: 3 }] };
    const stars = [10, 32, 54].map((x) => obj("star", "yellow", x, 32));
    expect(judge(want, scene(stars)).pass).toBe(true);
    expect(judge(want, scene(stars.slice(0, 2))).pass).toBe(false);
    expect(judge(want, scene([...stars, obj("star", "yellow", 32, 54)])).pass).toBe(false);
    // A star of another colour is not one of the three yellow stars.
    expect(judge(want, scene([...stars.slice(0, 2), obj("star", "red", 54, 32)])).pass).toBe(false);
  });

  it("exact_count: no other objects of that shape", () => {
    const want: Expect = { objects: [{ shape: "star", color: "yellow", count: 2 }], exact_count: true };
    const two = [obj("star", "yellow", 10, 32), obj("star", "yellow", 54, 32)];
    expect(judge(want, scene(two)).pass).toBe(true);
    expect(failing(want, scene([...two, obj("star", "red", 32, 10)]))).toEqual([
      "exact_count: 2 star in all",
    ]);
    expect(judge(want, scene([...two, obj("circle", "red", 32, 10)])).pass).toBe(true);
  });

  it("colors: the colour must match", () => {
    const want: Expect = { objects: [{ shape: "diamond", color: "green" }] };
    expect(judge(want, scene([obj("diamond", "green", 32, 32)])).pass).toBe(true);
    expect(judge(want, scene([obj("diamond", "blue", 32, 32)])).pass).toBe(false);
  });

  it("color_attr: each colour binds to its own shape", () => {
    const want: Expect = {
      objects: [
        { shape: "circle", color: "red" },
        { shape: "square", color: "blue" },
      ],
    };
    expect(judge(want, scene([obj("circle", "red", 10, 32), obj("square", "blue", 50, 32)])).pass).toBe(true);
    const swapped = scene([obj("circle", "blue", 10, 32), obj("square", "red", 50, 32)]);
    expect(failing(want, swapped)).toEqual(["objects[0]: a red circle", "objects[1]: a blue square"]);
  });

  it("position: the centre must lie in that third of the canvas, with a small margin", () => {
    const want: Expect = { objects: [{ shape: "triangle", position: "top_left" }] };
    expect(judge(want, scene([obj("triangle", "red", 10, 10)])).pass).toBe(true);
    // 22.5 is past the 21.3 line but within the 5 % (3.2 px) tolerance; 25 is not.
    expect(judge(want, scene([obj("triangle", "red", 22.5, 10)])).pass).toBe(true);
    expect(failing(want, scene([obj("triangle", "red", 25, 10)]))).toEqual([
      "objects[0]: triangle at top_left",
    ]);
    expect(judge(want, scene([obj("triangle", "red", 10, 54)])).pass).toBe(false);
  });

  it("position: relations compare centres with a margin; any matching pair may satisfy them", () => {
    const want: Expect = {
      objects: [{ shape: "star" }, { shape: "square" }],
      relations: [{ a: 0, rel: "left_of", b: 1 }],
    };
    expect(judge(want, scene([obj("star", "red", 10, 32), obj("square", "red", 50, 32)])).pass).toBe(true);
    expect(failing(want, scene([obj("star", "red", 50, 32), obj("square", "red", 10, 32)]))).toEqual([
      "relations: star left of square",
    ]);
    // Centres 2 px apart are within the margin (0.1 × the two widths = 2.8 px): not clearly left of.
    expect(judge(want, scene([obj("star", "red", 30, 10), obj("square", "red", 32, 50)])).pass).toBe(false);
    // One star on each side of the square: the left one satisfies the relation.
    const both = scene([
      obj("star", "red", 54, 32),
      obj("square", "red", 32, 32),
      obj("star", "blue", 10, 32),
    ]);
    expect(judge(want, both).pass).toBe(true);
    const vertical: Expect = { ...want, relations: [{ a: 0, rel: "above", b: 1 }] };
    expect(judge(vertical, scene([obj("star", "red", 32, 10), obj("square", "red", 32, 54)])).pass).toBe(
      true,
    );
    expect(judge(vertical, scene([obj("star", "red", 32, 54), obj("square", "red", 32, 10)])).pass).toBe(
      false,
    );
  });

  it("edit: the absent object must be gone", () => {
    const want: Expect = {
      objects: [{ shape: "square", color: "blue" }],
      absent: [{ shape: "square", color: "pink" }],
    };
    expect(judge(want, scene([obj("square", "blue", 32, 32)])).pass).toBe(true);
    const stillThere = scene([obj("square", "blue", 10, 32), obj("square", "pink", 50, 32)]);
    expect(failing(want, stillThere)).toEqual(["absent[0]: no pink square"]);
  });

  it("style_background: background, style and lighting must each match", () => {
    const want: Expect = {
      objects: [{ shape: "circle" }],
      background: "sky",
      style: "watercolor",
      lighting: "warm",
    };
    const right = { background: "sky", style: "watercolor", lighting: "warm" } as const;
    const circle = [obj("circle", "red", 32, 32)];
    expect(judge(want, scene(circle, right)).pass).toBe(true);
    expect(failing(want, scene(circle, { ...right, background: "gray" }))).toEqual(["background: sky"]);
    expect(failing(want, scene(circle, { ...right, style: "flat" }))).toEqual(["style: watercolor"]);
    expect(failing(want, scene(circle, { ...right, lighting: "dim" }))).toEqual(["lighting: warm"]);
  });
});

describe("judge on rendered images (renderer → detector → judge)", () => {
  const render = (s: Scene, seed = 3) => detect(renderScene(s, layoutScene(s, seed), seed));
  const base: Scene = {
    objects: [
      {
        shape: "star",
        color: "red",
        size: "medium",
        count: 1,
        placement: { kind: "grid", position: "left" },
      },
      {
        shape: "square",
        color: "blue",
        size: "large",
        count: 1,
        placement: { kind: "grid", position: "right" },
      },
    ],
    background: "gray",
    style: "outline",
    lighting: "dim",
  };
  const want: Expect = {
    objects: [
      { shape: "star", color: "red", position: "left" },
      { shape: "square", color: "blue", size: "large" },
    ],
    relations: [{ a: 0, rel: "left_of", b: 1 }],
    background: "gray",
    style: "outline",
    lighting: "dim",
  };

  it("passes the scene it describes", () => {
    expect(judge(want, render(base))).toMatchObject({ pass: true });
  });

  it("fails a scene that breaks one clause, naming that clause", () => {
    const moved: Scene = {
      ...base,
      objects: [
        { ...base.objects[0]!, placement: { kind: "grid", position: "bottom_right" } },
        { ...base.objects[1]!, placement: { kind: "grid", position: "top_left" } },
      ],
    };
    expect(failing(want, render(moved))).toEqual([
      "objects[0]: red star at left",
      "relations: red star left of large blue square",
    ]);
    const recoloured: Scene = {
      ...base,
      objects: [{ ...base.objects[0]!, color: "orange" }, base.objects[1]!],
    };
    expect(failing(want, render(recoloured))).toEqual([
      "objects[0]: a red star",
      "objects[0]: red star at left",
      "relations: red star left of large blue square",
    ]);
    expect(failing(want, render({ ...base, style: "watercolor" }))).toEqual(["style: outline"]);
    expect(failing(want, render({ ...base, lighting: "warm" }))).toEqual(["lighting: dim"]);
    const three: Scene = {
      ...base,
      objects: [
        ...base.objects,
        { ...base.objects[1]!, color: "green", count: 2, placement: { kind: "free" } },
      ],
    };
    const counted: Expect = { ...want, objects: [want.objects[0]!, { shape: "square", count: 1 }] };
    expect(failing(counted, render(three))).toEqual(["objects[1]: exactly 1 square"]);
  });

  it("sceneForExpect builds scenes whose ground truth and rendering both pass", () => {
    const wants: Expect[] = [
      want,
      {
        objects: [
          { shape: "circle", color: "red", count: 4 },
          { shape: "circle", color: "pink", count: 2 },
        ],
        exact_count: true,
      },
      { objects: [{ shape: "cross", color: "green" }], absent: [{ shape: "cross", color: "red" }] },
      {
        objects: [{ shape: "triangle" }, { shape: "diamond" }, { shape: "star" }],
        relations: [
          { a: 0, rel: "above", b: 1 },
          { a: 1, rel: "left_of", b: 2 },
        ],
      },
    ];
    for (const w of wants) {
      for (const seed of [1, 2, 3]) {
        const s = sceneForExpect(w, seed);
        const layout = layoutScene(s, seed);
        expect(judge(w, truthDetection(s, layout)).pass).toBe(true);
        expect(judge(w, detect(renderScene(s, layout, seed))).pass).toBe(true);
      }
    }
  });
});

describe("report aggregation", () => {
  const result = (category: string, score: number, held_out = false): PromptResult => ({
    id: `${category}-${score}`,
    category,
    text: "x",
    held_out,
    score,
    images: [],
  });

  it("overall is the mean of the per-category accuracies, not of the prompts", () => {
    const summary = summarize([
      result("counting", 1),
      result("counting", 1),
      result("counting", 1),
      result("counting", 0.5, true),
      result("position", 0),
    ]);
    expect(summary.categories.counting).toMatchObject({ accuracy: 0.875, n: 4 });
    expect(summary.categories.position).toMatchObject({ accuracy: 0, n: 1 });
    expect(summary.overall).toBeCloseTo(0.4375, 10);
    expect(summary.held_out).toMatchObject({ accuracy: 0.5, n: 1 });
    expect(summary.seen.accuracy).toBeCloseTo(0.75, 10);
  });
});

describe("runEval with a plugged-in generator", () => {
  const prompts: EvalPrompt[] = [
    '{"id":"a","category":"colors","prompt":"a red circle","expect":{"objects":[{"shape":"circle","color":"red"}]}}',
    '{"id":"b","category":"edit","turns":["a pink square","now make it blue"],"expect":{"objects":[{"shape":"square","color":"blue"}]}}',
  ].map((line, i) => parsePromptLine(line, `line ${i + 1}`));

  it("passes every turn of an edit to one generate call, judges the image, scores per category", async () => {
    const seen: string[][] = [];
    // Draws a red circle whatever it is asked: right for prompt a, wrong for the edit.
    const redCircle: Generator = {
      async generate(request, seed) {
        seen.push([...request.turns]);
        const s: Scene = {
          objects: [{ shape: "circle", color: "red", size: "large", count: 1, placement: { kind: "free" } }],
          background: "white",
          style: "flat",
          lighting: "daylight",
        };
        return renderScene(s, undefined, seed);
      },
    };
    const report = await runEval({
      prompts,
      generator: redCircle,
      mode: "test",
      imagesPerPrompt: 2,
      seed: 5,
      promptsFile: "-",
    });
    expect(seen).toEqual([
      ["a red circle"],
      ["a red circle"],
      ["a pink square", "now make it blue"],
      ["a pink square", "now make it blue"],
    ]);
    expect(report.categories.colors!.accuracy).toBe(1);
    expect(report.categories.edit!.accuracy).toBe(0);
    expect(report.overall).toBe(0.5);
    expect(report.prompts[1]!.images[0]!.failing.map((c) => c.clause)).toEqual(["objects[0]: a blue square"]);
    // Seeds differ per image and do not depend on the other prompts.
    expect(new Set(report.prompts.flatMap((p) => p.images.map((i) => i.seed))).size).toBe(4);
  });

  it("a blank image fails every prompt", async () => {
    const blank: Generator = {
      async generate() {
        const image = createImage(64, 64);
        image.data.fill(245);
        return image;
      },
    };
    const report = await runEval({
      prompts,
      generator: blank,
      mode: "test",
      imagesPerPrompt: 1,
      seed: 0,
      promptsFile: "-",
    });
    expect(report.overall).toBe(0);
  });
});
