/**
 * The critique loop on the real fixtures (tiny-ldm, tiny-planner, tiny-projection) and the committed
 * describer. The fixture images are noise-like, so where a test needs given agreements the describer's
 * readings are scripted (SwitchDescriber); everything else is the real engine.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePlan, printPlan } from "../evals/language/plan.ts";
import { POSITIONS } from "../evals/scene.ts";
import { createImage } from "../pipelines/image.ts";
import type { CellReading } from "../src/agent/describer.ts";
import { cellMask } from "../src/agent/edit-strategy.ts";
import { type AgentEngine, routeFor } from "../src/agent/engine.ts";
import { AtelierError } from "../src/errors.ts";
import { GenerationFailedError } from "../src/service/engine.ts";
import { eventPath, loadFixtureAgent, recorder, SwitchDescriber } from "./agent-harness.ts";

const PLAN = printPlan(
  parsePlan(
    "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 top left ; 2 bottom right <OBJECT> 1 one large star ; 2 one medium circle <COLOR> 1 red ; 2 blue ; background white <LIGHTING> daylight <IMG_END>",
  ),
);
/** Descriptions of an image made from PLAN: one colour wrong (two ways), the circle missing, or worse. */
const GREEN_STAR = PLAN.replace("1 red", "1 green");
const PINK_CIRCLE = PLAN.replace("2 blue", "2 pink");
const NO_CIRCLE = printPlan(
  parsePlan(
    "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 top left <OBJECT> 1 one large star <COLOR> 1 red ; background white <LIGHTING> daylight <IMG_END>",
  ),
);

const NO_CIRCLE_BLACK = NO_CIRCLE.replace("background white", "background black");

let engine: AgentEngine;
let describer: SwitchDescriber;

beforeAll(async () => {
  describer = await SwitchDescriber.load();
  engine = await loadFixtureAgent(describer);
});

afterAll(async () => {
  await engine?.dispose();
});

const run = (rounds: number, script: string[] = [], extra: Record<string, unknown> = {}) => {
  describer.reset();
  describer.script = [...script];
  const { context, events } = recorder();
  return { events, result: engine.generate({ plan: PLAN, seed: 11, steps: 2, rounds, ...extra }, context) };
};

describe("the critique loop", () => {
  it("records every round (plan, critique, seed, settings, image, node timings) and returns the best", async () => {
    describer.reset();
    const { context, events } = recorder();
    const id = "gen-trace";
    const result = await engine.generate({ plan: PLAN, seed: 11, steps: 2, rounds: 3 }, { ...context, id });
    const { trace } = result;
    expect(trace.length).toBeGreaterThanOrEqual(1);
    expect(trace.length).toBeLessThanOrEqual(3);
    if (trace.length < 3) expect(trace.at(-1)!.critique!.agreement).toBe(1);
    trace.forEach((round, k) => {
      expect(round.round).toBe(k + 1);
      expect(round.plan).toMatch(/^<IMG_BEGIN> .* <IMG_END>$/);
      expect(round.seeds).toEqual([11 + k]);
      if (round.repair) {
        // A repair (the describer's readings of these noise-like images decide) inpaints an earlier image.
        expect(k).toBeGreaterThan(0);
        expect(round.repair.from).toBeLessThanOrEqual(k);
        expect(round).toMatchObject({ mode: "inpaint", conditioning: "projection" });
      } else {
        expect(round.mode).toBe("txt2img");
        // A plan given directly has no request in words: the projection and the plan's caption take turns.
        expect(round.conditioning).toBe(k % 2 === 0 ? "projection" : "text_encoder");
        expect(round.encoded).toBe(k % 2 === 0 ? undefined : round.caption);
      }
      expect(round.settings).toMatchObject({ steps: 2, sampler: "ddim" });
      expect(round.images).toHaveLength(1);
      expect(round.images[0]).toMatchObject({ width: 64, height: 64 });
      expect(round.critique!.agreement).toBeGreaterThanOrEqual(0);
      expect(round.critique!.agreement).toBeLessThanOrEqual(1);
      expect(typeof round.critique!.text).toBe("string");
      const data = round.critique!.data as { issues: unknown[]; target: string; descriptions: string[] };
      expect(data.target).toBe(PLAN);
      expect(data.descriptions[0]).toMatch(/^<IMG_BEGIN>/);
      expect(data.issues.length > 0).toBe(round.critique!.agreement < 1);
      for (const node of [k === 0 ? "plan" : "revise", "condition", "sample", "describe", "critique"])
        expect(round.timings[node]).toBeGreaterThanOrEqual(0);
    });
    expect(trace[0]!.plan).toBe(PLAN);
    const best = trace.reduce((b, r) => (r.critique!.agreement > b.critique!.agreement ? r : b));
    expect(result.images).toBe(best.images);
    // A repaired image keeps the layout, and so the seed, of the image it repaired.
    let origin = best;
    while (origin.repair) origin = trace[origin.repair.from - 1]!;
    expect(result.seeds).toEqual(origin.seeds);
    expect(result.plans).toEqual([best.plan]);
    expect(result.timings.total).toBeGreaterThan(0);

    // Progress: one event group per node, rounds in order.
    const expected = ["plan:1", "conditioning:1", "step:1", "describing:1", "critique:1"];
    for (let r = 2; r <= trace.length; r++)
      expected.push(`revised:${r}`, `conditioning:${r}`, `step:${r}`, `describing:${r}`, `critique:${r}`);
    expect(eventPath(events)).toEqual(expected);
    // The checkpointed graph went through the nodes in the same order.
    const nodes = (await engine.checkpoints(id)).flatMap((c) => c.next).filter((n) => n !== "__start__");
    const path = ["plan", "condition", "sample", "describe", "critique"];
    for (let r = 2; r <= trace.length; r++)
      path.push("revise", "condition", "sample", "describe", "critique");
    expect(nodes).toEqual(path);
  });

  it("a request in words is planned first; rounds 1 runs no revision", async () => {
    describer.reset();
    const { context, events } = recorder();
    const result = await engine.generate({ prompt: "a red star", seed: 5, steps: 2, rounds: 1 }, context);
    expect(result.trace).toHaveLength(1);
    expect(eventPath(events)).toEqual([
      "planning:1",
      "plan:1",
      "conditioning:1",
      "step:1",
      "describing:1",
      "critique:1",
    ]);
    expect(result.trace[0]!.timings.plan).toBeGreaterThan(0);
  });

  it("takes the projection, then the text encoder on the request's words, then on the plan's caption", async () => {
    const { context } = recorder();
    describer.reset();
    describer.script = [NO_CIRCLE, GREEN_STAR, PINK_CIRCLE];
    // The scripted readings (a star and a circle) never match the request, so all three rounds run.
    const { trace } = await engine.generate(
      { prompt: "a blue square", seed: 5, steps: 2, rounds: 3 },
      context,
    );
    expect(trace.map((r) => r.conditioning)).toEqual(["projection", "text_encoder", "text_encoder"]);
    expect(trace.map((r) => r.encoded)).toEqual([undefined, "a blue square", trace[2]!.caption]);
    expect(trace[2]!.caption).toMatch(/square/);
    // The routes condition differently: the same seed would still give three different images.
    const [a, b, c] = trace.map((r) => r.images[0]!.data);
    expect(Buffer.compare(Buffer.from(a!), Buffer.from(b!))).not.toBe(0);
    expect(Buffer.compare(Buffer.from(b!), Buffer.from(c!))).not.toBe(0);
  });

  it("a later round repairs the best image so far: it repaints only the cells read wrong, under a pinned plan", async () => {
    const { context, events } = recorder();
    describer.reset();
    // Round 1 shows the star but not the circle; round 2 then shows both.
    const cells = POSITIONS.map((position) =>
      position === "top_left"
        ? { position, shape: "star", color: "red", size: "large", confidence: 1 }
        : { position, shape: null, color: "red", size: "small", confidence: 1 },
    ) as CellReading[];
    describer.script = [{ plan: NO_CIRCLE, cells }, PLAN];
    const { trace, seeds } = await engine.generate({ plan: PLAN, seed: 5, steps: 2, rounds: 3 }, context);
    // The result's seed is the composition's: round 1's, whose layout the repair kept.
    expect(trace[1]!.seeds).toEqual([6]);
    expect(seeds).toEqual([5]);
    const steps = events.flatMap((e) => (e.type === "step" && e.round === 2 ? [`${e.step}/${e.steps}`] : []));
    expect(steps).toEqual(["1/2", "2/2"]);
    expect(trace).toHaveLength(2);
    expect(trace[0]!.repair).toBeUndefined();
    const repaired = trace[1]!;
    expect(repaired).toMatchObject({
      mode: "inpaint",
      plan: PLAN,
      conditioning: "projection",
      repair: {
        from: 1,
        cells: ["bottom_right"],
        plans: [
          printPlan(
            parsePlan(
              PLAN.replace("1 top left ; 2 bottom right", "1 bottom right").replace(
                "1 one large star ; 2 one medium circle <COLOR> 1 red ; 2 blue",
                "1 one medium circle <COLOR> 1 blue",
              ),
            ),
          ),
        ],
        reason: "repaint medium blue circle at bottom_right",
      },
    });
    const [before, after] = [trace[0]!.images[0]!, repaired.images[0]!];
    const mask = cellMask(["bottom_right"], before.width, before.height);
    let inside = 0;
    for (let i = 0; i < before.width * before.height; i++) {
      const same = [0, 1, 2].every((c) => before.data[3 * i + c] === after.data[3 * i + c]);
      if (mask.data[i] === 0) expect(same).toBe(true);
      else if (!same) inside++;
    }
    expect(inside).toBeGreaterThan(0);
  });

  it("a repair of two objects runs two passes, and its progress counts through both", async () => {
    const { context, events } = recorder();
    describer.reset();
    const empty = POSITIONS.map((position) => ({
      position,
      shape: null,
      color: "red",
      size: "small",
      confidence: 1,
    })) as CellReading[];
    describer.script = [{ plan: NO_CIRCLE, cells: empty }, PLAN];
    const { trace } = await engine.generate({ plan: PLAN, seed: 5, steps: 2, rounds: 2 }, context);
    expect(trace[1]!.repair).toMatchObject({ cells: ["top_left", "bottom_right"] });
    expect(trace[1]!.repair!.plans).toHaveLength(2);
    const steps = events.flatMap((e) => (e.type === "step" && e.round === 2 ? [`${e.step}/${e.steps}`] : []));
    expect(steps).toEqual(["1/4", "2/4", "3/4", "4/4"]);
  });

  it("routes: projection first; an edit keeps it; without projection layers every round takes the caption", () => {
    const routes = (options: Parameters<typeof routeFor>[1]) => [1, 2, 3, 4].map((r) => routeFor(r, options));
    expect(routes({ projection: true, request: true, edit: false })).toEqual([
      "projection",
      "request",
      "caption",
      "projection",
    ]);
    expect(routes({ projection: true, request: false, edit: false })).toEqual([
      "projection",
      "caption",
      "projection",
      "caption",
    ]);
    expect(routes({ projection: true, request: true, edit: true })).toEqual(Array(4).fill("projection"));
    expect(routes({ projection: false, request: true, edit: false })).toEqual(Array(4).fill("caption"));
  });

  it("a generation id used before starts a fresh loop", async () => {
    describer.reset();
    const { context } = recorder();
    const id = "gen-again";
    await engine.generate({ plan: PLAN, seed: 1, steps: 2, rounds: 1 }, { ...context, id });
    const again = await engine.generate({ plan: PLAN, seed: 2, steps: 2, rounds: 1 }, { ...context, id });
    expect(again.trace.map((r) => r.seeds)).toEqual([[2]]);
    expect((await engine.checkpoints(id)).flatMap((c) => c.next)).toEqual([
      "__start__",
      "plan",
      "condition",
      "sample",
      "describe",
      "critique",
    ]);
  });

  it("never runs more rounds than asked", async () => {
    const { result, events } = run(2, [GREEN_STAR, GREEN_STAR, GREEN_STAR]);
    expect((await result).trace).toHaveLength(2);
    expect(events.some((e) => e.round > 2)).toBe(false);
  });

  it("stops early at agreement 1 and returns that round", async () => {
    const { result, events } = run(3, [GREEN_STAR, PLAN]);
    const { trace, images, seeds } = await result;
    expect(trace.map((r) => r.critique!.agreement)).toEqual([expect.any(Number), 1]);
    expect(trace[0]!.critique!.agreement).toBeLessThan(1);
    expect(images).toBe(trace[1]!.images);
    expect(seeds).toEqual([12]);
    expect(events.at(-1)).toMatchObject({ type: "critique", round: 2, agreement: 1 });
  });

  it("returns the best round by agreement, the earliest on ties", async () => {
    // Rounds 2 and 3 tie (one colour wrong each), both better than round 1 (two faults).
    let { trace, images } = await run(3, [NO_CIRCLE_BLACK, GREEN_STAR, PINK_CIRCLE]).result;
    const [a, b, c] = trace.map((r) => r.critique!.agreement);
    expect(b).toBe(c);
    expect(b).toBeGreaterThan(a!);
    expect(images).toBe(trace[1]!.images);
    // Rounds 1 and 3 tie.
    ({ trace, images } = await run(3, [GREEN_STAR, NO_CIRCLE_BLACK, PINK_CIRCLE]).result);
    expect(trace[0]!.critique!.agreement).toBe(trace[2]!.critique!.agreement);
    expect(images).toBe(trace[0]!.images);
  });

  it("raises guidance after a critique that finds objects missing, and changes the seed every round", async () => {
    const { trace } = await run(3, [NO_CIRCLE, GREEN_STAR, GREEN_STAR], { guidance: 4 }).result;
    expect(trace[0]!.critique!.text).toContain("missing");
    expect(trace.map((r) => r.settings.guidance)).toEqual([4, 5, 5]);
    expect(trace.map((r) => r.seeds[0])).toEqual([11, 12, 13]);
  });

  it("stops when cancelled in the middle of a round, and keeps working afterwards", async () => {
    describer.reset();
    const { context, events } = recorder((event, abort) => {
      if (event.type === "step" && event.round === 2) abort("cancelled by the test");
    });
    await expect(
      engine.generate({ plan: PLAN, seed: 3, steps: 4, rounds: 3 }, context),
    ).rejects.toMatchObject({
      code: "cancelled",
    });
    expect(events.filter((e) => e.round === 2 && e.type === "step")).toHaveLength(1);
    expect(events.some((e) => e.type === "describing" && e.round === 2)).toBe(false);
    const again = await run(1).result;
    expect(again.trace).toHaveLength(1);
  });

  it("a failure in a round ends the generation with an error naming it, and keeps the finished rounds", async () => {
    describer.reset();
    describer.failOnCall = 2;
    const { context } = recorder();
    const error = (await engine
      .generate({ plan: PLAN, seed: 3, steps: 2, rounds: 3 }, context)
      .catch((e) => e)) as GenerationFailedError;
    expect(error).toBeInstanceOf(GenerationFailedError);
    expect(error).toMatchObject({ round: 2, node: "describe", status: 500, code: "describer_failed" });
    expect(error.message).toContain("round 2 (describe): the describer crashed");
    expect(error.trace).toHaveLength(1);
    expect(error.trace[0]!.images[0]).toMatchObject({ width: 64, height: 64 });
    expect(error.trace[0]!.critique).toBeTruthy();
  });

  it("rejects bad input naming the field", async () => {
    const { context } = recorder();
    for (const rounds of [0, 9, 2.5]) {
      await expect(engine.generate({ plan: PLAN, rounds }, context)).rejects.toMatchObject({
        status: 400,
        param: "rounds",
      });
      const state = { history: [], image: createImage(64, 64), seed: 1, sampler: null, plan: PLAN };
      await expect(engine.edit(state, { text: "make it blue" }, { rounds }, context)).rejects.toMatchObject({
        param: "rounds",
      });
    }
    const state = { history: [], image: createImage(64, 64), seed: 1, sampler: null, plan: PLAN };
    const small = { width: 32, height: 32, data: new Uint8Array(32 * 32) };
    const wrong = await engine
      .edit(state, { text: "make it blue", mask: small }, {}, context)
      .catch((e) => e);
    expect(wrong).toBeInstanceOf(AtelierError);
    expect(wrong).toMatchObject({ status: 400, param: "mask" });
    expect(wrong.message).toContain("32×32");
    const noImage = { ...state, image: null };
    const mask = { width: 64, height: 64, data: new Uint8Array(64 * 64) };
    await expect(engine.edit(noImage, { text: "x", mask }, {}, context)).rejects.toMatchObject({
      param: "mask",
    });
    await expect(engine.generate({ plan: "<IMG_BEGIN> nonsense <IMG_END>" }, context)).rejects.toMatchObject({
      status: 400,
      param: "plan",
    });
  });
});
