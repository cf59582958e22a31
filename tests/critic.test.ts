import { describe, expect, it } from "vitest";
import { printPlan } from "../evals/language/plan.ts";
import { agreement, critiqueText, revisionExample } from "../evals/language/revision.ts";
import { createRng } from "../evals/rng.ts";
import { sampleScene } from "../evals/sample.ts";
import { type ObjectGroup, POSITIONS, type Position, type Scene } from "../evals/scene.ts";
import { critique } from "../src/agent/critic.ts";
import type { CellReading } from "../src/agent/describer.ts";
import { AtelierError } from "../src/errors.ts";

const group = (over: Partial<ObjectGroup>): ObjectGroup => ({
  shape: "star",
  color: "red",
  size: "medium",
  count: 1,
  placement: { kind: "free" },
  ...over,
});
const scene = (objects: ObjectGroup[], over: Partial<Scene> = {}): Scene => ({
  objects,
  background: "white",
  style: "flat",
  lighting: "daylight",
  ...over,
});

// A red star at the top left, two blue circles anywhere, a green square to the right of the star.
const target = scene([
  group({ placement: { kind: "grid", position: "top_left" } }),
  group({ shape: "circle", color: "blue", count: 2 }),
  group({
    shape: "square",
    color: "green",
    size: "large",
    placement: { kind: "relation", relation: "right_of", of: 0 },
  }),
]);
const described = (objects: ObjectGroup[], over: Partial<Scene> = {}) => scene(objects, over);
const [star, circles] = [target.objects[0]!, target.objects[1]!];
const squareAt = (position: Position) =>
  group({ shape: "square", color: "green", size: "large", placement: { kind: "grid", position } });

describe("critic", () => {
  it("agrees fully with an identical plan, given as text or as a scene", () => {
    const same = critique(printPlan(target), target);
    expect(same).toEqual({ agreement: 1, critique: "the image matches the plan", issues: [] });
    // The describer places single objects on the grid; a relation that holds there is no fault.
    expect(critique(target, described([star, circles, squareAt("top")])).agreement).toBe(1);
  });

  const faults: [string, Scene, object][] = [
    [
      "missing object",
      described([star, circles]),
      { field: "missing", object: 2, expected: "a green square", found: null },
    ],
    [
      "extra object",
      described([star, circles, squareAt("top"), group({ shape: "cross", color: "pink" })]),
      { field: "extra", object: 3, expected: null, found: "a pink cross" },
    ],
    [
      "wrong shape",
      described([{ ...star, shape: "diamond" }, circles, squareAt("top")]),
      { field: "shape", object: 0, expected: "star", found: "diamond" },
    ],
    [
      "wrong colour",
      described([{ ...star, color: "orange" }, circles, squareAt("top")]),
      { field: "color", object: 0, expected: "red", found: "orange" },
    ],
    [
      "wrong size",
      described([{ ...star, size: "small" }, circles, squareAt("top")]),
      { field: "size", object: 0, expected: "medium", found: "small" },
    ],
    [
      "wrong count",
      described([star, { ...circles, count: 3 }, squareAt("top")]),
      { field: "count", object: 1, expected: 2, found: 3 },
    ],
    [
      "wrong position",
      described([{ ...star, placement: { kind: "grid", position: "center" } }, circles, squareAt("right")]),
      { field: "position", object: 0, expected: "at the top left", found: "in the center" },
    ],
    [
      "wrong relation",
      described([star, circles, squareAt("bottom_left")]),
      {
        field: "relation",
        object: 2,
        expected: "to the right of the star",
        found: "at the bottom left",
      },
    ],
    [
      "wrong style",
      described([star, circles, squareAt("top")], { style: "watercolor" }),
      { field: "style", expected: "flat", found: "watercolor" },
    ],
    [
      "wrong background",
      described([star, circles, squareAt("top")], { background: "sky" }),
      { field: "background", expected: "white", found: "sky" },
    ],
    [
      "wrong lighting",
      described([star, circles, squareAt("top")], { lighting: "warm" }),
      { field: "lighting", expected: "daylight", found: "warm" },
    ],
  ];

  for (const [name, got, finding] of faults) {
    it(`reports a ${name} as one structured issue`, () => {
      const result = critique(target, got);
      expect(result.agreement).toBeLessThan(1);
      expect(result.agreement).toBeGreaterThan(0);
      expect(result.issues).toHaveLength(1);
      expect(result.issues[0]).toMatchObject(finding);
      expect(result.critique).toBe(result.issues[0]!.message);
      expect(result.critique).toBe(critiqueText(target, got));
      expect(result.agreement).toBe(agreement(target, got));
    });
  }

  it("agrees with the language module on sampled scenes and their revision examples", () => {
    const rng = createRng(81);
    for (let i = 0; i < 200; i++) {
      const want = sampleScene(rng);
      const example = revisionExample(want, rng);
      const result = critique(example.target, example.description);
      expect(result.critique).toBe(example.critique);
      expect(result.issues.length).toBeGreaterThanOrEqual(example.faults.length);
      expect(result.agreement).toBeLessThan(1);
      expect(result.agreement).toBeGreaterThanOrEqual(0);
      expect(critique(want, want).agreement).toBe(1);
    }
  });

  it("an edit's objects must stay in their cells: one more check each, against the cell readings", () => {
    const cells = POSITIONS.map((position) =>
      position === "top_left"
        ? { position, shape: "star", color: "red", size: "medium", confidence: 1 }
        : { position, shape: null, color: "red", size: "small", confidence: 1 },
    ) as CellReading[];
    const want = scene([group({ placement: { kind: "grid", position: "top_left" } })]);
    const stay = [{ position: "top_left", shape: "star", color: "red" } as const];
    expect(critique(want, want, { stay, cells })).toMatchObject({ agreement: 1, issues: [] });
    const moved = critique(want, want, { stay: [{ ...stay[0], position: "center" }], cells });
    expect(moved.agreement).toBeCloseTo(8 / 9);
    expect(moved.critique).toBe("the red star should stay in the center");
    expect(moved.issues).toEqual([
      {
        field: "position",
        object: 0,
        expected: "in the center",
        found: null,
        message: "the red star should stay in the center",
      },
    ]);
    // Without cell readings (a describer adapter) the checks are not made.
    expect(critique(want, want, { stay: [{ ...stay[0], position: "center" }] }).agreement).toBe(1);
  });

  it("names the argument that is not a plan", () => {
    expect(() => critique("<IMG_BEGIN> nonsense", target)).toThrow(AtelierError);
    expect(() => critique("<IMG_BEGIN> nonsense", target)).toThrow(/^target: /);
    expect(() => critique(target, { ...target, background: "plaid" } as unknown as Scene)).toThrow(
      /^description\.background/,
    );
  });
});
