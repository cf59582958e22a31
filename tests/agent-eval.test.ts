/**
 * Agent mode in the eval harness (a models folder of fixtures plus the committed describer), the
 * preservation figure of edit dialogues, and the loop benchmark's shape.
 */
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { detect } from "../evals/detector.ts";
import type { Expect } from "../evals/expect.ts";
import { createGenerator, runEval } from "../evals/harness.ts";
import type { EvalPrompt } from "../evals/language/prompt-file.ts";
import { layoutScene } from "../evals/layout.ts";
import { preservation } from "../evals/preservation.ts";
import { renderScene } from "../evals/render.ts";
import type { ObjectGroup, Scene } from "../evals/scene.ts";
import type { RgbImage } from "../pipelines/image.ts";
import { runAgentBench } from "../src/agent/bench.ts";
import { registerGenerators } from "../src/generators/index.ts";
import { removeDir } from "./service-harness.ts";

const models = mkdtempSync(join(tmpdir(), "agent-models-"));
for (const [name, target] of [
  ["ldm", "tests/fixtures/tiny-ldm"],
  ["planner", "tests/fixtures/tiny-planner"],
  ["projection", "tests/fixtures/tiny-projection"],
  ["describer", "models/describer"],
] as const)
  symlinkSync(resolve(target), join(models, name));

afterAll(() => removeDir(models));

const at = (shape: ObjectGroup["shape"], color: ObjectGroup["color"], position: string): ObjectGroup => ({
  shape,
  color,
  size: "medium",
  count: 1,
  placement: { kind: "grid", position } as ObjectGroup["placement"],
});
const render = (objects: ObjectGroup[]): RgbImage => {
  const scene: Scene = { objects, background: "white", style: "flat", lighting: "daylight" };
  return renderScene(scene, layoutScene(scene, 1), 1);
};
const star = at("star", "red", "top_left");
const circle = at("circle", "blue", "bottom_right");
const square = at("square", "yellow", "top_right");

describe("preservation", () => {
  const before = detect(render([star, circle]));
  const judge = (expect: Expect, after: ObjectGroup[]) =>
    preservation(expect, before, detect(render(after)), 64, 64);

  it("counts the objects the edit left alone that kept shape, colour and cell", () => {
    const added: Expect = {
      objects: [
        { shape: "star", color: "red", position: "top_left" },
        { shape: "circle", color: "blue", position: "bottom_right" },
        { shape: "square", color: "yellow", position: "top_right" },
      ],
    };
    expect(judge(added, [star, circle, square])).toEqual({ total: 2, kept: 2 });
    // The generator moved the circle although the edit only added a square.
    expect(judge(added, [star, at("circle", "blue", "center"), square])).toEqual({ total: 2, kept: 1 });
    // …or repainted it.
    expect(judge(added, [star, at("circle", "green", "bottom_right"), square])).toEqual({
      total: 2,
      kept: 1,
    });
  });

  it("does not judge what the edit changed (recoloured, resized, moved, recounted)", () => {
    const recolored: Expect = {
      objects: [
        { shape: "star", color: "pink", position: "top_left" },
        { shape: "circle", color: "blue", position: "bottom_right" },
      ],
      absent: [{ shape: "star", color: "red" }],
    };
    expect(judge(recolored, [at("star", "pink", "top_left"), circle])).toEqual({ total: 1, kept: 1 });
    const resized: Expect = {
      objects: [
        { shape: "star", color: "red", size: "large", position: "top_left" },
        { shape: "circle", color: "blue" },
      ],
    };
    expect(judge(resized, [star, circle])).toEqual({ total: 1, kept: 1 });
    const moved: Expect = {
      objects: [
        { shape: "star", color: "red", position: "center" },
        { shape: "circle", color: "blue" },
      ],
    };
    expect(judge(moved, [at("star", "red", "center"), circle])).toEqual({ total: 1, kept: 1 });
  });
});

describe("agent mode", () => {
  registerGenerators();
  const prompts: EvalPrompt[] = [
    {
      id: "one",
      category: "single_object",
      prompt: "a red star",
      expect: { objects: [{ shape: "star", color: "red" }] },
    },
    {
      id: "edit",
      category: "edit",
      turns: ["a red star at the top left", "add a blue circle at the bottom right"],
      expect: {
        objects: [
          { shape: "star", color: "red", position: "top_left" },
          { shape: "circle", color: "blue", position: "bottom_right" },
        ],
      },
    },
  ];

  it("runs requests through the loop and edit dialogues as sessions; the report has every category and preservation", async () => {
    const generator = await createGenerator("agent", { models });
    try {
      const turns: number[] = [];
      const request = {
        id: "e",
        turns: prompts[1]!.turns!,
        expect: prompts[1]!.expect,
        onTurn: (t: number) => turns.push(t),
      };
      const image = await generator.generate(request, 3);
      expect([image.width, image.height, turns]).toEqual([64, 64, [0, 1]]);
      const report = await runEval({
        prompts,
        generator,
        mode: "agent",
        imagesPerPrompt: 1,
        seed: 0,
        promptsFile: "inline",
      });
      expect(Object.keys(report.categories).sort()).toEqual(["edit", "single_object"]);
      expect(report.preservation).toMatchObject({ images: 1 });
      expect(report.prompts[1]!.images[0]!.preservation).toBeDefined();
      expect(report.prompts[0]!.images[0]!.preservation).toBeUndefined();
    } finally {
      await generator.close?.();
    }
  });

  it("plan mode reports the image before an edit's last turn too", async () => {
    const generator = await createGenerator("plan", { models });
    try {
      const report = await runEval({
        prompts,
        generator,
        mode: "plan",
        imagesPerPrompt: 1,
        seed: 0,
        promptsFile: "inline",
      });
      expect(report.preservation).toMatchObject({ images: 1 });
    } finally {
      await generator.close?.();
    }
  });

  it("bench --agent reports p50/p95 per node, for the graph and the whole loop", async () => {
    const report = await runAgentBench({ models, runs: 2, steps: 2, threads: 1, prompt: "a red star" });
    expect(Object.keys(report.nodes)).toEqual([
      "plan",
      "condition",
      "sample",
      "describe",
      "critique",
      "revise",
    ]);
    expect(report.nodes.plan!.n).toBe(2);
    expect(report.nodes.sample!.n).toBe(2 * report.meanRounds);
    expect(report.loop.n).toBe(2);
    expect(report.loop.p50).toBeGreaterThan(report.nodes.sample!.p50);
    expect(report.settings.rounds).toBe(3);
  });
});
