import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePlan } from "../evals/language/plan.ts";
import { createPlanGrammar, tokenizePlan } from "../evals/language/plan-grammar.ts";
import { groundingFor, objectMentions, statedEdit, statedPlacements } from "../planner/grounding.ts";
import { Planner } from "../planner/planner.ts";

const user = (content: string) => ({ role: "user" as const, content });

describe("object mentions", () => {
  it("reads count, size, colour and shape of each mention in order", () => {
    expect(objectMentions("show me three tiny red circles plus a mid-sized blue square and 2 stars")).toEqual(
      [
        { shape: "circle", count: 3, size: "small", color: "red" },
        { shape: "square", count: 1, size: "medium", color: "blue" },
        { shape: "star", count: 2 },
      ],
    );
  });

  it("skips references back and mentions whose determiner disagrees with the noun", () => {
    expect(objectMentions("a cross, where the cross sits above a pair of circles")).toEqual([
      { shape: "cross", count: 1 },
      { shape: "circle" },
    ]);
    expect(objectMentions("a photo of a triangle")).toEqual([{ shape: "triangle", count: 1 }]);
  });
});

describe("stated placements", () => {
  const placements = (text: string) => statedPlacements(text, objectMentions(text));

  it("attaches positions to the object before them and relations to the objects around them", () => {
    expect(placements("a triangle above a star")).toEqual([
      { kind: "relation", relation: "above", of: 1 },
      { kind: "free" },
    ]);
    expect(
      placements(
        "a yellow circle plus a small square in the lower left; the circle sits right of the square",
      ),
    ).toEqual([
      { kind: "relation", relation: "right_of", of: 1 },
      { kind: "grid", position: "bottom_left" },
    ]);
    expect(placements("a star at the top-left corner plus a circle")).toEqual([
      { kind: "grid", position: "top_left" },
      { kind: "free" },
    ]);
  });

  it("gives up when a reference picks no object or an object is placed twice", () => {
    expect(placements("a star left of the square")).toBeNull();
    expect(placements("a star at the top, at the bottom")).toBeNull();
  });
});

describe("stated edits", () => {
  const scene = parsePlan(
    "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 top left ; 2 anywhere ; 3 above 1 <OBJECT> 1 one small circle ; 2 two large stars ; 3 one medium square <COLOR> 1 red ; 2 blue ; 3 green ; background white <LIGHTING> daylight <IMG_END>",
  );
  const groups = scene.objects;

  it("reads recolour, resize, move, recount, add and removal from the turn's words", () => {
    expect(statedEdit(scene, "turn the stars pink")![1]).toEqual({ ...groups[1], color: "pink" });
    expect(statedEdit(scene, "could the square be bigger?")![2]).toEqual({ ...groups[2], size: "large" });
    expect(statedEdit(scene, "shift the red one to the center")![0]).toEqual({
      ...groups[0],
      placement: { kind: "grid", position: "center" },
    });
    expect(statedEdit(scene, "swap the stars for three blue stars")![1]).toEqual({ ...groups[1], count: 3 });
    expect(statedEdit(scene, "throw in a tiny pink cross below the stars")).toBeNull(); // stars are two: no relation
    expect(statedEdit(scene, "let's also have a tiny pink cross")!.at(-1)).toEqual({
      shape: "cross",
      color: "pink",
      size: "small",
      count: 1,
      placement: { kind: "free" },
    });
    expect(statedEdit(scene, "drop the stars")).toEqual([
      groups[0],
      { ...groups[2], placement: { ...groups[2]!.placement, of: 0 } },
    ]);
  });

  it("leaves every group as it was for a scene-wide edit, and refuses what reads two ways", () => {
    expect(statedEdit(scene, "swap the backdrop for black")).toEqual(groups);
    expect(statedEdit(scene, "erase the circle")).toBeNull(); // the square is placed relative to it
    expect(statedEdit(scene, "make it blue")).toBeNull(); // "it" among three groups
  });
});

describe("grounding", () => {
  it("allows only defaults and what the request states", () => {
    const r = groundingFor([
      user("a tiny green star plus a circle; backdrop: grey, rendered in a watercolour look"),
    ]);
    expect([...r.styles!].sort()).toEqual(["flat", "watercolor"]);
    expect([...r.backgrounds!].sort()).toEqual(["gray", "white"]);
    expect([...r.lightings!]).toEqual(["daylight"]);
    expect([...r.places!]).toEqual(["anywhere"]);
    expect(r.groups).toEqual({ min: 2, max: 2 });
    expect(r.perGroup).toEqual([
      {
        placement: { kind: "free" },
        shapes: new Set(["star"]),
        counts: new Set([1]),
        sizes: new Set(["small"]),
        colors: new Set(["green"]),
      },
      {
        placement: { kind: "free" },
        shapes: new Set(["circle"]),
        counts: new Set([1]),
        sizes: new Set(["large"]), // an unstated size is the request default
      },
    ]);
  });

  it("reads positions inside hyphenated words and relations", () => {
    const r = groundingFor([user("a star at the top-left corner, a square higher than the star")]);
    expect([...r.places!].sort()).toEqual(["above", "anywhere", "left", "top"]);
  });

  it("keeps an edit open to the earlier plan's values and to new groups the turn mentions", () => {
    const plan =
      "<IMG_BEGIN> <STYLE> outline <LAYOUT> 1 top <OBJECT> 1 one large star <COLOR> 1 red ; background black <LIGHTING> dim <IMG_END>";
    const r = groundingFor([
      user("a big red star at the top"),
      { role: "assistant", content: plan },
      user("add a blue circle"),
    ]);
    expect([...r.styles!].sort()).toEqual(["flat", "outline"]);
    expect([...r.colors!].sort()).toEqual(["blue", "red"]);
    expect(r.sizes!.size).toBe(3);
    // the turn reads one way (an added blue circle): the star keeps everything, the circle is as said
    const star = {
      counts: new Set([1]),
      sizes: new Set(["large"]),
      shapes: new Set(["star"]),
      colors: new Set(["red"]),
    };
    expect(r.groups).toEqual({ min: 2, max: 2 });
    expect(r.perGroup).toEqual([
      { ...star, placement: { kind: "grid", position: "top" } },
      {
        counts: new Set([1]),
        sizes: new Set(["large"]),
        shapes: new Set(["circle"]),
        colors: new Set(["blue"]),
        placement: { kind: "free" },
      },
    ]);
    // a critique lists differences and is not read as one edit: groups it does not refer to keep their values
    const revision = groundingFor([
      user("a big red star at the top"),
      { role: "assistant", content: plan },
      { role: "critique", content: "there should be a blue circle" },
    ]);
    expect(revision.groups).toEqual({ min: 1, max: 2 });
    expect(revision.perGroup).toEqual([{ ...star, placement: { kind: "grid", position: "top" } }]);
  });
});

describe("restricted plan grammar", () => {
  it("offers only the restricted words, and falls back to the grammar when none is left", () => {
    const grammar = createPlanGrammar({ styles: new Set(["outline"]), colors: new Set() });
    for (const token of tokenizePlan("<IMG_BEGIN> <STYLE>")) grammar.advance(token);
    expect([...grammar.allowed()]).toEqual(["outline"]);
    for (const token of tokenizePlan("outline <LAYOUT> 1 anywhere <OBJECT> 1 one small star <COLOR> 1"))
      grammar.advance(token);
    expect(grammar.allowed().size).toBe(7); // an empty colour restriction would leave no word: ignored
  });

  it("bounds the number of groups and fixes a group's values", () => {
    const grammar = createPlanGrammar({
      groups: { min: 2, max: 2 },
      perGroup: [
        {
          counts: new Set([3]),
          shapes: new Set(["circle"]),
          sizes: new Set(["small"]),
          colors: new Set(["red"]),
        },
      ],
    });
    for (const token of tokenizePlan("<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 anywhere")) grammar.advance(token);
    expect([...grammar.allowed()]).toEqual([";"]);
    for (const token of tokenizePlan("; 2 anywhere")) grammar.advance(token);
    expect([...grammar.allowed()]).toEqual(["<OBJECT>"]);
    for (const token of tokenizePlan("<OBJECT> 1")) grammar.advance(token);
    expect([...grammar.allowed()]).toEqual(["three"]);
    grammar.advance("three");
    expect([...grammar.allowed()]).toEqual(["small"]);
    grammar.advance("small");
    expect([...grammar.allowed()]).toEqual(["circles"]);
  });
});

describe("grounded decoding with the embedded planner", () => {
  let planner: Planner;
  beforeAll(async () => {
    planner = await Planner.load("models/planner");
  });
  afterAll(() => planner.dispose());

  it("plans each mentioned object as its own group, with the stated values", async () => {
    for (const request of [
      "a photograph of a square together with a circle",
      "i'm after two huge pink stars as well as a tiny orange diamond; backdrop: sky",
    ]) {
      const result = await planner.plan([user(request)]);
      const mentions = objectMentions(request);
      expect(result.scene.objects.map((g) => g.shape)).toEqual(mentions.map((m) => m.shape));
      expect(result.scene.objects.map((g) => g.count)).toEqual(mentions.map((m) => m.count));
      expect(result.scene.style).toBe("flat");
    }
  });
});
