import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPlanGrammar, tokenizePlan } from "../evals/language/plan-grammar.ts";
import { groundingFor, objectMentions } from "../planner/grounding.ts";
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

describe("grounding", () => {
  it("allows only defaults and what the request states", () => {
    const r = groundingFor([
      user("a big green star plus a circle; backdrop: grey, rendered in a watercolour look"),
    ]);
    expect([...r.styles!].sort()).toEqual(["flat", "watercolor"]);
    expect([...r.backgrounds!].sort()).toEqual(["gray", "white"]);
    expect([...r.lightings!]).toEqual(["daylight"]);
    expect([...r.places!]).toEqual(["anywhere"]);
    expect(r.groups).toEqual({ min: 2, max: 2 });
    expect(r.perGroup).toEqual([
      {
        shapes: new Set(["star"]),
        counts: new Set([1]),
        sizes: new Set(["large"]),
        colors: new Set(["green"]),
      },
      { shapes: new Set(["circle"]), counts: new Set([1]), sizes: new Set(["medium"]) },
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
    // the blue circle is new; the red star is not referred to ("blue circle" names neither its colour nor
    // its shape), so it keeps its values
    expect(r.groups).toEqual({ min: 1, max: 2 });
    expect(r.perGroup).toEqual([
      {
        counts: new Set([1]),
        sizes: new Set(["large"]),
        shapes: new Set(["star"]),
        colors: new Set(["red"]),
      },
    ]);
    expect(r.sizes!.size).toBe(3);
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
