import { describe, expect, it } from "vitest";
import {
  createPlanGrammar,
  PLAN_SPECIAL_TOKENS,
  parsePlan,
  planVocabulary,
  printPlan,
  tokenizePlan,
} from "../evals/language/index.ts";
import { createRng, type Rng } from "../evals/rng.ts";
import { sampleScene } from "../evals/sample.ts";
import {
  BACKGROUNDS,
  COLORS,
  LIGHTINGS,
  type ObjectGroup,
  type Placement,
  POSITIONS,
  RELATIONS,
  type Scene,
  SceneSchema,
  SHAPES,
  SIZES,
  STYLES,
} from "../evals/scene.ts";
import { AtelierError } from "../src/errors.ts";

/** Any valid scene, including what the sampler never draws (forward relations, repeated kinds, crowded counts). */
function anyScene(rng: Rng): Scene {
  for (;;) {
    const n = 1 + rng.int(4);
    const objects: ObjectGroup[] = [];
    for (let i = 0; i < n; i++) {
      const count = rng.chance(0.5) ? 1 : 1 + rng.int(4);
      const kind = rng.pick(["free", "grid", "relation"] as const);
      const placement: Placement =
        kind === "free"
          ? { kind }
          : kind === "grid"
            ? { kind, position: rng.pick(POSITIONS) }
            : { kind, relation: rng.pick(RELATIONS), of: rng.int(n) };
      objects.push({
        shape: rng.pick(SHAPES),
        color: rng.pick(COLORS),
        size: rng.pick(SIZES),
        count,
        placement,
      });
    }
    const scene = {
      objects,
      background: rng.pick(BACKGROUNDS),
      style: rng.pick(STYLES),
      lighting: rng.pick(LIGHTINGS),
    };
    if (SceneSchema.safeParse(scene).success) return scene;
  }
}

function errorOf(text: string): AtelierError {
  try {
    parsePlan(text);
  } catch (error) {
    expect(error).toBeInstanceOf(AtelierError);
    return error as AtelierError;
  }
  throw new Error(`parsed: ${text}`);
}

const EXAMPLE =
  "<IMG_BEGIN> <STYLE> watercolor <LAYOUT> 1 top left ; 2 anywhere ; 3 left of 1 <OBJECT> 1 one small star ; 2 two medium circles ; 3 one large square <COLOR> 1 red ; 2 blue ; 3 green ; background sky <LIGHTING> warm <IMG_END>";

describe("plan print and parse", () => {
  it("parses the contract's example", () => {
    const scene = parsePlan(EXAMPLE);
    expect(scene).toEqual({
      objects: [
        {
          shape: "star",
          color: "red",
          size: "small",
          count: 1,
          placement: { kind: "grid", position: "top_left" },
        },
        { shape: "circle", color: "blue", size: "medium", count: 2, placement: { kind: "free" } },
        {
          shape: "square",
          color: "green",
          size: "large",
          count: 1,
          placement: { kind: "relation", relation: "left_of", of: 0 },
        },
      ],
      background: "sky",
      style: "watercolor",
      lighting: "warm",
    });
    expect(printPlan(scene)).toBe(EXAMPLE);
  });

  it("round-trips 10,000 sampled scenes and 3,000 arbitrary valid scenes", () => {
    const rng = createRng(7);
    for (let i = 0; i < 10_000; i++) {
      const sampled = sampleScene(rng);
      expect(parsePlan(printPlan(sampled))).toEqual(sampled);
      if (i % 10 >= 3) continue;
      const arbitrary = anyScene(rng);
      expect(parsePlan(printPlan(arbitrary))).toEqual(arbitrary);
    }
  });

  it("allowed() admits every token of a printed plan, and refuses the rest with the token's position", () => {
    const rng = createRng(11);
    const vocabulary = planVocabulary();
    for (let i = 0; i < 300; i++) {
      const tokens = tokenizePlan(printPlan(anyScene(rng)));
      const grammar = createPlanGrammar();
      for (const [k, token] of tokens.entries()) {
        const allowed = grammar.allowed();
        expect(allowed.has(token)).toBe(true);
        const refused = vocabulary.filter((word) => !allowed.has(word));
        if (refused.length > 0) {
          const word = rng.pick(refused);
          expect(() => grammar.clone().advance(word)).toThrow(`token ${k + 1} ('${word}')`);
        }
        grammar.advance(token);
      }
      expect(grammar.done).toBe(true);
      expect(grammar.allowed().size).toBe(0);
    }
  });

  it("every path the grammar allows ends in a valid scene that prints back to the same text", () => {
    const rng = createRng(5);
    const seen = new Set<string>();
    for (let i = 0; i < 1500; i++) {
      const grammar = createPlanGrammar();
      const tokens: string[] = [];
      while (!grammar.done) {
        const options = [...grammar.allowed()];
        expect(options.length).toBeGreaterThan(0);
        const token = rng.pick(options);
        for (const option of options) seen.add(option);
        grammar.advance(token);
        tokens.push(token);
      }
      const text = tokens.join(" ");
      expect(printPlan(parsePlan(text))).toBe(text);
    }
    expect([...seen].sort()).toEqual([...planVocabulary()].sort());
  });

  it("vocabulary holds the special tokens the grammar emits", () => {
    const vocabulary = new Set(planVocabulary());
    for (const token of PLAN_SPECIAL_TOKENS) {
      expect(vocabulary.has(token)).toBe(token !== "<MATERIAL>" && token !== "<CAMERA>");
    }
  });

  it.each([
    [
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center <OBJECT> 1 one small star <COLOR> 1 red ; background sky <LIGHTING> warm",
      "ends after token 19",
      "'<IMG_END>'",
    ],
    ["<IMG_BEGIN> <STYLE> glossy", "token 3 ('glossy')", "'flat'"],
    ["<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center ; 3 top", "token 8 ('3')", "'2'"],
    ["<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 left of 1", "token 8 ('1')", "'2', '3', '4'"],
    ["<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 left of 3 ; 2 center <OBJECT>", "token 12 ('<OBJECT>')", "';'"],
    ["<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center <OBJECT> 1 five", "token 9 ('five')", "'one'"],
    ["<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center <OBJECT> 1 two small stars", "token 9 ('two')", "'one'"],
    [
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 anywhere <OBJECT> 1 two small star",
      "token 11 ('star')",
      "'stars'",
    ],
    [
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 anywhere <OBJECT> 1 one small stars",
      "token 11 ('stars')",
      "'star'",
    ],
    [
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 anywhere ; 2 anywhere ; 3 anywhere <OBJECT> 1 four small stars ; 2 four small circles ; 3 two",
      "token 25 ('two')",
      "'one'",
    ],
    ["<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 anywhere ; 2 above 1 <OBJECT> 1 two", "token 13 ('two')", "'one'"],
    ["<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 left of 2 ; 2 above", "token 11 ('above')", "'top'"],
    [
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center ; 2 top <OBJECT> 1 one small star ; 2 one small star <COLOR> 1 red ; background",
      "token 24 ('background')",
      "'2'",
    ],
    [
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center <OBJECT> 1 one small star <COLOR> 1 red <IMG_END>",
      "token 15 ('<IMG_END>')",
      "';'",
    ],
  ])("rejects %s", (text, where, expected) => {
    const error = errorOf(text);
    expect(error.param).toBe("plan");
    expect(error.message).toContain(where);
    expect(error.message).toContain(expected);
  });

  it("stops a fifth object and a relation to a relation", () => {
    const grammar = createPlanGrammar();
    for (const t of tokenizePlan(
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 top ; 2 left ; 3 center ; 4 anywhere",
    )) {
      grammar.advance(t);
    }
    expect([...grammar.allowed()]).toEqual(["<OBJECT>"]);
    const chained = createPlanGrammar();
    for (const t of tokenizePlan("<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center ; 2 left of 1 ; 3 above")) {
      chained.advance(t);
    }
    expect([...chained.allowed()]).toEqual(["1", "4"]);
  });
});
