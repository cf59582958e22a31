import { describe, expect, it } from "vitest";
import {
  captionsFor,
  EDIT_FRAMES,
  FAMILIES,
  REQUEST_DEFAULTS,
  REQUEST_FRAMES,
  requestFor,
} from "../evals/language/index.ts";
import {
  BACKGROUND_WORDS,
  LIGHTING_ADJECTIVES,
  LIGHTING_NOUNS,
  POSITION_WORDS,
  RELATION_WORDS,
  STYLE_NOUNS,
  STYLE_WORDS,
} from "../evals/language/requests.ts";
import { plural } from "../evals/language/words.ts";
import { createRng } from "../evals/rng.ts";
import { sampleScene } from "../evals/sample.ts";
import type { ObjectGroup, Scene } from "../evals/scene.ts";

const NUMBERS = ["one", "two", "three", "four"];
const noun = (g: ObjectGroup) => (g.count === 1 ? g.shape : plural(g.shape));
const anyOf = (text: string, words: string[]) => words.some((w) => text.includes(w));

function scenes(n: number, seed: number): Scene[] {
  const rng = createRng(seed);
  return Array.from({ length: n }, () => sampleScene(rng));
}

describe("template families", () => {
  it("train and heldout share no sentence frame", () => {
    const fields = Object.keys(REQUEST_FRAMES.train) as (keyof typeof REQUEST_FRAMES.train)[];
    for (const field of fields) {
      const heldout = new Set(REQUEST_FRAMES.heldout[field]);
      expect(
        REQUEST_FRAMES.train[field].filter((f) => heldout.has(f)),
        field,
      ).toEqual([]);
    }
    const editFields = Object.keys(EDIT_FRAMES.train) as (keyof typeof EDIT_FRAMES.train)[];
    for (const field of editFields) {
      // An empty lead is the absence of a frame, not a shared one.
      const heldout = new Set(EDIT_FRAMES.heldout[field].filter(Boolean));
      expect(
        EDIT_FRAMES.train[field].filter((f) => heldout.has(f)),
        field,
      ).toEqual([]);
    }
  });

  it("both families cover every construct", () => {
    for (const family of FAMILIES) {
      for (const list of Object.values(REQUEST_FRAMES[family])) expect(list.length).toBeGreaterThan(0);
      for (const list of Object.values(EDIT_FRAMES[family])) expect(list.length).toBeGreaterThan(0);
    }
  });
});

describe("requestFor", () => {
  it("states every attribute that differs from the defaults, in scene order, in both families", () => {
    for (const family of FAMILIES) {
      const rng = createRng(family === "train" ? 1 : 2);
      for (const scene of scenes(1500, 3)) {
        const text = requestFor(scene, rng, family);
        expect(text).not.toMatch(/[{}]|\s\s|\ba [aeiou]/);
        let cursor = -1;
        for (const group of scene.objects) {
          const at = text.indexOf(`${group.color} ${noun(group)}`, cursor + 1);
          expect(at, `${group.color} ${noun(group)} in order in: ${text}`).toBeGreaterThan(cursor);
          cursor = at;
          if (group.count > 1)
            expect(anyOf(text, [NUMBERS[group.count - 1]!, String(group.count)])).toBe(true);
          const p = group.placement;
          if (p.kind === "grid") expect(anyOf(text, POSITION_WORDS[p.position]), text).toBe(true);
          if (p.kind === "relation") expect(anyOf(text, RELATION_WORDS[p.relation]), text).toBe(true);
        }
        if (scene.background !== REQUEST_DEFAULTS.background) {
          expect(anyOf(text, BACKGROUND_WORDS[scene.background]), text).toBe(true);
        }
        if (scene.style !== REQUEST_DEFAULTS.style) {
          expect(anyOf(text, [...STYLE_WORDS[scene.style], ...STYLE_NOUNS[scene.style]]), text).toBe(true);
        }
        if (scene.lighting !== REQUEST_DEFAULTS.lighting) {
          expect(
            anyOf(text, [...LIGHTING_NOUNS[scene.lighting], ...LIGHTING_ADJECTIVES[scene.lighting]]),
            text,
          ).toBe(true);
        }
      }
    }
  });

  it("is deterministic for a seed and varied across seeds", () => {
    const [scene] = scenes(1, 9);
    const a = Array.from({ length: 20 }, (_, i) => requestFor(scene!, createRng(i)));
    const b = Array.from({ length: 20 }, (_, i) => requestFor(scene!, createRng(i)));
    expect(a).toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(10);
  });
});

describe("captionsFor", () => {
  it("gives four captions whose first two mention every attribute", () => {
    const rng = createRng(4);
    for (const scene of scenes(500, 5)) {
      const captions = captionsFor(scene, rng);
      expect(captions).toHaveLength(4);
      for (const caption of captions.slice(0, 2)) {
        for (const group of scene.objects) {
          expect(caption).toContain(`${group.size} ${group.color} ${noun(group)}`);
          if (group.count > 1) expect(caption).toContain(`${NUMBERS[group.count - 1]} ${group.size}`);
          const p = group.placement;
          if (p.kind === "grid") {
            expect(caption).toMatch(p.position === "center" ? /center|middle/ : p.position.replace("_", " "));
          }
          if (p.kind === "relation") expect(caption).toMatch(/to the left of|to the right of|above|below/);
        }
        expect(caption).toContain(`${scene.background} background`);
        expect(caption).toContain(scene.style);
        expect(caption).toContain(scene.lighting === "daylight" ? "daylight" : `${scene.lighting} light`);
      }
      expect(captions[2]).toMatch(/^a photo of /);
    }
  });

  it("spells numbers as words and plurals right", () => {
    const scene: Scene = {
      objects: [{ shape: "cross", color: "red", size: "small", count: 3, placement: { kind: "free" } }],
      background: "white",
      style: "flat",
      lighting: "daylight",
    };
    expect(captionsFor(scene, createRng(1))[0]).toMatch(/^three small red crosses on a white background/);
  });
});
