import { describe, expect, it } from "vitest";
import {
  applyEdit,
  editDialogue,
  FAMILIES,
  isUsableScene,
  parsePlan,
  printPlan,
  referencesTo,
} from "../evals/language/index.ts";
import { agreement, critiqueText, diffScenes, revisionExample } from "../evals/language/revision.ts";
import { createRng } from "../evals/rng.ts";
import { isHeldOut, sampleScene } from "../evals/sample.ts";
import type { ObjectGroup, Scene } from "../evals/scene.ts";
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

/** The scene with one edit's field put back, to check that nothing else moved. */
function without(before: Scene, after: Scene, kind: string, target: number): Scene {
  switch (kind) {
    case "restyle":
      return { ...after, style: before.style };
    case "background":
      return { ...after, background: before.background };
    case "lighting":
      return { ...after, lighting: before.lighting };
    default: {
      const field = { recolor: "color", move: "placement", resize: "size", recount: "count" }[
        kind
      ] as keyof ObjectGroup;
      const objects = after.objects.map((g, i) =>
        i === target ? { ...g, [field]: before.objects[i]![field] } : g,
      );
      return { ...after, objects };
    }
  }
}

describe("edit dialogues", () => {
  it("every turn is a usable scene that changes only what the edit names", () => {
    const rng = createRng(21);
    const kinds = new Set<string>();
    for (let i = 0; i < 400; i++) {
      const family = FAMILIES[i % 2]!;
      const dialogue = editDialogue(sampleScene(rng), rng, 4, { family });
      expect(dialogue).toHaveLength(4);
      for (let t = 1; t < dialogue.length; t++) {
        const { scene: after, edit, kind, request } = dialogue[t]!;
        const before = dialogue[t - 1]!.scene;
        kinds.add(kind);
        expect(isUsableScene(after)).toBe(true);
        expect(parsePlan(printPlan(after))).toEqual(after);
        expect(request).not.toMatch(/[{}]|\s\s/);
        expect(applyEdit(before, edit!)).toEqual(after);
        if (edit!.kind === "add") expect(after.objects.slice(0, -1)).toEqual(before.objects);
        else if (edit!.kind !== "remove") {
          expect(without(before, after, edit!.kind, "target" in edit! ? edit!.target : -1)).toEqual(before);
          expect(after).not.toEqual(before);
        }
      }
    }
    expect([...kinds].sort()).toEqual(
      ["add", "background", "lighting", "move", "recolor", "recount", "remove", "resize", "restyle"].sort(),
    );
  });

  it("never passes through a rejected scene", () => {
    const rng = createRng(3);
    for (let i = 0; i < 100; i++) {
      const start = sampleScene(rng, { split: "train" });
      const dialogue = editDialogue(start, rng, 5, { reject: (s) => isHeldOut(s).length > 0 });
      for (const turn of dialogue) expect(isHeldOut(turn.scene)).toEqual([]);
    }
  });

  it("refers to groups as people do", () => {
    const two = scene([
      group({ shape: "star", color: "red", placement: { kind: "grid", position: "left" } }),
      group({ shape: "circle", color: "blue", placement: { kind: "grid", position: "right" } }),
    ]);
    expect(referencesTo(two, 0, 0)).toEqual(["the star", "it", "the red one", "the left one"]);
    expect(referencesTo(two, 1, 0)).toEqual(["the circle", "the blue one", "the right one"]);
    const circles = scene([group({ shape: "circle", count: 3 }), group({ shape: "circle", color: "blue" })]);
    expect(referencesTo(circles, 0, null)).toEqual(["the circles", "the red ones"]);
  });

  it("'make it blue' changes only the colour", () => {
    const one = scene([group({ placement: { kind: "grid", position: "top_left" } })], {
      style: "watercolor",
    });
    const after = applyEdit(one, { kind: "recolor", target: 0, color: "blue" });
    expect(after).toEqual(
      scene([group({ color: "blue", placement: { kind: "grid", position: "top_left" } })], {
        style: "watercolor",
      }),
    );
  });

  it("removal renumbers relations and refuses to orphan one", () => {
    const three = scene([
      group({ shape: "circle" }),
      group({ shape: "square", color: "blue" }),
      group({ shape: "star", color: "green", placement: { kind: "relation", relation: "above", of: 1 } }),
    ]);
    const removed = applyEdit(three, { kind: "remove", target: 0 });
    expect(removed.objects[1]!.placement).toEqual({ kind: "relation", relation: "above", of: 0 });
    expect(() => applyEdit(three, { kind: "remove", target: 1 })).toThrow(AtelierError);
    expect(() => applyEdit(three, { kind: "remove", target: 1 })).toThrow(/edit\.target/);
  });
});

describe("critique and revision", () => {
  it("names what is wrong, deterministically", () => {
    const target = scene([group({}), group({ shape: "circle", color: "green", count: 2 })]);
    const described = scene([group({ color: "blue" }), group({ shape: "circle", color: "green" })]);
    expect(critiqueText(target, described)).toBe("the star should be red, not blue; one circle is missing");
    expect(critiqueText(target, target)).toBe("the image matches the plan");
    const extra = scene([...target.objects, group({ shape: "cross", color: "pink" })], { lighting: "dim" });
    expect(critiqueText(target, extra)).toBe(
      "there should be no pink cross; the lighting should be daylight, not dim",
    );
  });

  it("judges placements as the world does: anywhere always holds, relations by grid cells", () => {
    const target = scene([
      group({ shape: "square", color: "blue", placement: { kind: "grid", position: "center" } }),
      group({ placement: { kind: "relation", relation: "left_of", of: 0 } }),
    ]);
    const onGrid = scene([
      group({ shape: "square", color: "blue", placement: { kind: "grid", position: "center" } }),
      group({ placement: { kind: "grid", position: "bottom_left" } }),
    ]);
    expect(diffScenes(target, onGrid).issues).toEqual([]);
    const wrongSide = scene([onGrid.objects[0]!, group({ placement: { kind: "grid", position: "right" } })]);
    expect(critiqueText(target, wrongSide)).toBe(
      "the star should be to the left of the square, not on the right",
    );
    const free = scene([group({})]);
    expect(diffScenes(free, scene([group({ placement: { kind: "grid", position: "top" } })])).issues).toEqual(
      [],
    );
  });

  it("revision examples carry one or two faults the critique names", () => {
    const rng = createRng(8);
    for (let i = 0; i < 500; i++) {
      const target = sampleScene(rng);
      const example = revisionExample(target, rng);
      expect(example.faults.length).toBeGreaterThanOrEqual(1);
      expect(example.faults.length).toBeLessThanOrEqual(2);
      expect(example.revised).toBe(example.target);
      expect(parsePlan(example.target)).toEqual(target);
      const described = parsePlan(example.description);
      expect(agreement(target, described)).toBeLessThan(1);
      expect(example.critique).toBe(critiqueText(target, described));
      expect(example.critique).not.toBe("the image matches the plan");
    }
  });
});
