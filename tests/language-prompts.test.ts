import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { makePrompts, PROMPT_FILES, toJsonl } from "../evals/language/make-prompts.ts";
import { PROMPT_CATEGORIES, readPromptFile } from "../evals/language/prompt-file.ts";
import { REQUEST_FRAMES } from "../evals/language/requests.ts";
import { AtelierError } from "../src/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "atelier-prompts-"));
let fileNo = 0;
function fileWith(lines: string[]): string {
  const path = join(dir, `p${fileNo++}.jsonl`);
  writeFileSync(path, lines.join("\n"));
  return path;
}

const ok = (id: string, expect: object = { objects: [{ shape: "star" }] }) =>
  JSON.stringify({ id, category: "single_object", prompt: "a photograph of a star", expect });

function errorOf(lines: string[]): AtelierError {
  try {
    readPromptFile(fileWith(lines));
  } catch (error) {
    expect(error).toBeInstanceOf(AtelierError);
    return error as AtelierError;
  }
  throw new Error("no error");
}

describe("prompt sets", () => {
  it("the committed files are what make-prompts.ts writes", () => {
    const sets = makePrompts();
    expect(readFileSync(join("evals/prompts", PROMPT_FILES.main), "utf8")).toBe(toJsonl(sets.main));
    expect(readFileSync(join("evals/prompts", PROMPT_FILES.smoke), "utf8")).toBe(toJsonl(sets.smoke));
  });

  it("holds ≥ 400 valid prompts, ≥ 30 per category, with held-out compositions", () => {
    const prompts = readPromptFile(join("evals/prompts", PROMPT_FILES.main));
    expect(prompts.length).toBeGreaterThanOrEqual(400);
    for (const category of PROMPT_CATEGORIES) {
      expect(prompts.filter((p) => p.category === category).length, category).toBeGreaterThanOrEqual(30);
    }
    for (const category of ["colors", "position", "color_attr", "edit"]) {
      expect(
        prompts.some((p) => p.category === category && p.heldout),
        category,
      ).toBe(true);
    }
    expect(prompts.filter((p) => p.category === "edit").every((p) => (p.turns?.length ?? 0) >= 2)).toBe(true);
  });

  it("uses no training frame", () => {
    const prompts = readPromptFile(join("evals/prompts", PROMPT_FILES.main));
    const texts = prompts.flatMap((p) => p.turns ?? [p.prompt!]);
    for (const text of texts) expect(text.startsWith("a photo of")).toBe(false);
    // The train openers that carry words around the description must never frame a prompt.
    const openers = REQUEST_FRAMES.train.openers.filter((o) => o !== "{x}").map((o) => o.split("{x}"));
    for (const text of texts) {
      for (const [before, after] of openers) {
        const framed =
          text.startsWith(before!) && text.endsWith(after!) && text.length > before!.length + after!.length;
        expect(framed && (before!.length > 0 || after!.length > 0), `${text} ~ ${before}{x}${after}`).toBe(
          false,
        );
      }
    }
  });
});

describe("readPromptFile errors name the line and the field", () => {
  it.each([
    [[ok("a"), "{not json"], "line 2", "not valid JSON"],
    [[ok("a"), ok("b", { objects: [{ shape: "hexagon" }] })], "line 2: expect.objects.0.shape", ""],
    [[ok("a"), "", ok("b", { objects: [{ shape: "star", colour: "red" }] })], "line 3: expect.objects.0", ""],
    [[ok("a"), ok("a")], "line 2: id", "duplicate id 'a' (first on line 1)"],
    [
      [JSON.stringify({ id: "x", category: "c", expect: { objects: [{ shape: "star" }] } })],
      "line 1: prompt",
      "exactly one",
    ],
    [
      [ok("a", { objects: ["star", "circle", "square", "cross", "diamond"].map((shape) => ({ shape })) })],
      "line 1: expect.objects",
      "",
    ],
    [
      [
        ok("a", {
          objects: [
            { shape: "star", count: 4 },
            { shape: "circle", count: 4 },
            { shape: "cross", count: 2 },
          ],
        }),
      ],
      "line 1: expect.objects",
      "at most 9",
    ],
    [[ok("a", { objects: [{ shape: "star", count: 5 }] })], "line 1: expect.objects.0.count", ""],
    [
      [ok("a", { objects: [{ shape: "star", count: 2, position: "top" }] })],
      "line 1: expect.objects.0.position",
      "",
    ],
    [
      [ok("a", { objects: [{ shape: "star" }], relations: [{ a: 0, rel: "above", b: 1 }] })],
      "line 1: expect.relations.0.b",
      "no objects[1]",
    ],
    [
      [
        ok("a", {
          objects: [{ shape: "star", position: "left" }, { shape: "circle" }],
          relations: [
            { a: 0, rel: "right_of", b: 1 },
            { a: 1, rel: "right_of", b: 0 },
          ],
        }),
      ],
      "line 1: expect.relations",
      "no arrangement",
    ],
    [
      [
        ok("a", { objects: [{ shape: "star", position: "left" }], relations: [] }),
        ok("b", { objects: [{ shape: "star", color: "red" }], absent: [{ shape: "star" }] }),
      ],
      "line 2: expect.absent.0",
      "contradicts objects[0]",
    ],
    [
      [ok("a", { objects: [{ shape: "star" }, { shape: "star", color: "red" }] })],
      "line 1: expect.objects.1",
      "overlaps",
    ],
  ])("%j", (lines, where, message) => {
    const error = errorOf(lines);
    expect(error.message).toContain(where);
    expect(error.message).toContain(message);
  });

  it("accepts satisfiable edge cases", () => {
    const prompts = readPromptFile(
      fileWith([
        ok("a", {
          objects: [{ shape: "star", count: 4 }, { shape: "circle", count: 4 }, { shape: "cross" }],
        }),
        ok("b", {
          objects: [
            { shape: "star", position: "left" },
            { shape: "circle", color: "red" },
          ],
          relations: [{ a: 1, rel: "right_of", b: 0 }],
          absent: [{ shape: "circle", color: "blue" }],
        }),
      ]),
    );
    expect(prompts.map((p) => p.id)).toEqual(["a", "b"]);
  });
});
