/**
 * Edit sessions: the strategy per edit kind (pure, on scenes), the cell masks, and edits through the real
 * engine — with the embedded planner (models/planner, text-encoder path) for edits in words, and with
 * tiny-planner + tiny-projection for the locks.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePlan, printPlan } from "../evals/language/plan.ts";
import {
  type Color,
  type ObjectGroup,
  POSITIONS,
  type Position,
  type Scene,
  type Shape,
} from "../evals/scene.ts";
import type { RgbImage } from "../pipelines/image.ts";
import { Planner } from "../planner/planner.ts";
import type { CellReading } from "../src/agent/describer.ts";
import { cellMask, chooseEditStrategy, stayingObjects } from "../src/agent/edit-strategy.ts";
import { AgentEngine } from "../src/agent/engine.ts";
import { foregroundCoverage } from "../src/agent/matte.ts";
import type { GenerateResult, SessionState } from "../src/service/engine.ts";
import { loadFixtureAgent, recorder, SwitchDescriber } from "./agent-harness.ts";

const group = (over: Partial<ObjectGroup>): ObjectGroup => ({
  shape: "star",
  color: "red",
  size: "medium",
  count: 1,
  placement: { kind: "grid", position: "top_left" },
  ...over,
});
const scene = (objects: ObjectGroup[], over: Partial<Scene> = {}): Scene => ({
  objects,
  background: "white",
  style: "flat",
  lighting: "daylight",
  ...over,
});
const star = group({});
const circle = group({
  shape: "circle",
  color: "blue",
  placement: { kind: "grid", position: "bottom_right" },
});
const squares = group({ shape: "square", color: "green", count: 2, placement: { kind: "free" } });
const before = scene([star, circle, squares]);

describe("edit strategy", () => {
  it("inpaints the cells of grid objects that were recoloured, resized, added, removed or moved", () => {
    const recolor = chooseEditStrategy(before, scene([{ ...star, color: "blue" }, circle, squares]));
    expect(recolor).toMatchObject({ kind: "inpaint", cells: ["top_left"] });
    const resize = chooseEditStrategy(before, scene([star, { ...circle, size: "large" }, squares]));
    expect(resize).toMatchObject({ kind: "inpaint", cells: ["bottom_right"] });
    const reshape = chooseEditStrategy(before, scene([{ ...star, shape: "diamond" }, circle, squares]));
    expect(reshape).toMatchObject({ kind: "inpaint", cells: ["top_left"] });
    const moon = group({
      shape: "circle",
      color: "yellow",
      placement: { kind: "grid", position: "top_right" },
    });
    const add = chooseEditStrategy(before, scene([star, circle, squares, moon]));
    expect(add).toMatchObject({ kind: "inpaint", cells: ["top_right"] });
    expect(chooseEditStrategy(before, scene([star, squares]))).toMatchObject({
      kind: "inpaint",
      cells: ["bottom_right"],
    });
    const moved = { ...circle, placement: { kind: "grid", position: "center" } } as ObjectGroup;
    expect(chooseEditStrategy(before, scene([star, moved, squares]))).toMatchObject({
      kind: "inpaint",
      cells: ["center", "bottom_right"],
    });
  });

  it("composes a background or lighting change from the session image, and regenerates a style change", () => {
    expect(chooseEditStrategy(before, scene([star, circle, squares], { background: "black" }))).toEqual({
      kind: "compose",
      changes: ["background"],
      reason: "only the background changed: the same objects, composed",
    });
    expect(
      chooseEditStrategy(before, scene([star, circle, squares], { background: "sky", lighting: "warm" })),
    ).toMatchObject({ kind: "compose", changes: ["background", "lighting"] });
    expect(chooseEditStrategy(before, scene([star, circle, squares], { style: "watercolor" }))).toMatchObject(
      {
        kind: "regenerate",
        reason: expect.stringContaining("only the style changed"),
      },
    );
    expect(
      chooseEditStrategy(before, scene([star, circle, squares], { style: "outline", lighting: "dim" })),
    ).toMatchObject({
      kind: "regenerate",
      reason: expect.stringContaining("only the style, lighting changed"),
    });
  });

  it("finds objects without a grid position where the describer reads them, and room for added ones", () => {
    // The describer's reading of the session image: the grid star and circle, two green squares elsewhere.
    const readings = POSITIONS.map((position) => {
      const at: Record<string, [Shape, Color]> = {
        top_left: ["star", "red"],
        bottom_right: ["circle", "blue"],
        center: ["square", "green"],
        left: ["square", "green"],
      };
      const [shape, color] = at[position] ?? [null, "red"];
      return { position, shape, color } as const;
    });
    const recolor = chooseEditStrategy(
      before,
      scene([star, circle, { ...squares, color: "pink" }]),
      readings,
    );
    expect(recolor).toMatchObject({ kind: "inpaint", cells: ["left", "center"] });
    const fewer = chooseEditStrategy(before, scene([star, circle, { ...squares, count: 1 }]), readings);
    expect(fewer).toMatchObject({ kind: "inpaint", cells: ["left", "center"] });
    // Four squares need more cells than the two they hold: every cell read as empty joins the mask.
    const more = chooseEditStrategy(before, scene([star, circle, { ...squares, count: 4 }]), readings);
    expect(more).toMatchObject({
      kind: "inpaint",
      cells: ["top", "top_right", "left", "center", "right", "bottom_left", "bottom"],
    });
    const removed = chooseEditStrategy(before, scene([star, circle]), readings);
    expect(removed).toMatchObject({ kind: "inpaint", cells: ["left", "center"] });
    // A lone object placed anywhere, pinned to a cell by the edit ("let the square sit in the lower left"):
    // erased where the describer reads it, drawn in its new cell.
    const lone = scene([group({ shape: "square", color: "green", placement: { kind: "free" } })]);
    const lonePinned = scene([
      group({ shape: "square", color: "green", placement: { kind: "grid", position: "bottom_left" } }),
    ]);
    const loneReadings = readings.map((r) => (r.position === "left" ? { ...r, shape: null } : r));
    expect(chooseEditStrategy(lone, lonePinned, loneReadings)).toMatchObject({
      kind: "inpaint",
      cells: ["center", "bottom_left"],
    });
    // With a grid object changed too, both are repainted.
    const both = chooseEditStrategy(
      before,
      scene([{ ...star, color: "blue" }, circle, { ...squares, size: "large" }]),
      readings,
    );
    expect(both).toMatchObject({ kind: "inpaint", cells: ["top_left", "left", "center"] });
    // Not found in the image: img2img.
    const unseen = readings.map((r) => (r.shape === "square" ? { ...r, shape: null } : r));
    expect(
      chooseEditStrategy(before, scene([star, circle, { ...squares, color: "pink" }]), unseen).kind,
    ).toBe("img2img");
  });

  it("falls back to img2img for everything else", () => {
    const recount = scene([star, circle, { ...squares, count: 3 }]);
    expect(chooseEditStrategy(before, recount).kind).toBe("img2img");
    const mixed = scene([{ ...star, color: "blue" }, circle, squares], { background: "black" });
    expect(chooseEditStrategy(before, mixed).kind).toBe("img2img");
    expect(chooseEditStrategy(before, before)).toMatchObject({
      kind: "img2img",
      reason: "the plan did not change",
    });
    // The star anchors a relation: changing it may move the square that must stay to its right.
    const anchored = scene([
      star,
      group({ shape: "square", placement: { kind: "relation", relation: "right_of", of: 0 } }),
    ]);
    const recolored = scene([{ ...star, color: "pink" }, anchored.objects[1]!]);
    expect(chooseEditStrategy(anchored, recolored)).toMatchObject({ kind: "img2img" });
  });

  it("names the objects an edit leaves alone where the session image shows them", () => {
    const home = POSITIONS.map((position) => {
      const seen: Record<string, [Shape, Color]> = {
        top_left: ["star", "red"],
        bottom_right: ["circle", "blue"],
        center: ["square", "green"],
        left: ["square", "green"],
      };
      const [shape, color] = seen[position] ?? [null, "red"];
      return { position, shape, color, size: "medium", confidence: 1 };
    }) as CellReading[];
    const recolored = scene([{ ...star, color: "blue" }, circle, squares]);
    expect(stayingObjects(before, recolored, home)).toEqual([
      { position: "bottom_right", shape: "circle", color: "blue" },
      { position: "left", shape: "square", color: "green" },
      { position: "center", shape: "square", color: "green" },
    ]);
    // Recounted squares are not left alone; a reading with more of a group than planned is not trusted.
    expect(stayingObjects(before, scene([star, circle, { ...squares, count: 3 }]), home)).toHaveLength(2);
    expect(stayingObjects(before, scene([star, circle, { ...squares, count: 1 }]), home)).toHaveLength(2);
    const moreRead = home.map((r) => (r.position === "top" ? { ...r, shape: "star" as const } : r));
    expect(stayingObjects(before, before, moreRead)).toHaveLength(3);
  });

  it("masks whole grid cells, thirds of each side at any image size", () => {
    const small = cellMask(["top_right"], 64, 64);
    const at = (m: typeof small, x: number, y: number) => m.data[y * m.width + x];
    expect(at(small, 43, 0)).toBe(255);
    expect(at(small, 63, 21)).toBe(255);
    expect(at(small, 20, 0)).toBe(0);
    expect(at(small, 63, 23)).toBe(0);
    const big = cellMask(["center", "bottom_left"], 512, 512);
    const painted = big.data.reduce((n, v) => n + (v === 255 ? 1 : 0), 0);
    expect(painted).toBeGreaterThanOrEqual(2 * 171 * 171);
    expect(painted).toBeLessThanOrEqual(2 * 172 * 172);
    expect(at(big, 256, 256)).toBe(255);
    expect(at(big, 10, 500)).toBe(255);
    expect(at(big, 500, 10)).toBe(0);
  });
});

/** Pixels (indexes) where two images differ. */
function changed(a: RgbImage, b: RgbImage): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.width * a.height; i++)
    if (
      a.data[3 * i] !== b.data[3 * i] ||
      a.data[3 * i + 1] !== b.data[3 * i + 1] ||
      a.data[3 * i + 2] !== b.data[3 * i + 2]
    )
      out.push(i);
  return out;
}

describe("edits through the agent", () => {
  let engine: AgentEngine;
  let first: GenerateResult;
  let session: SessionState;
  const request = "a red star at the top left and a blue circle at the bottom right on a white background";

  beforeAll(async () => {
    engine = await loadFixtureAgent("models/describer", "embedded");
    first = await engine.generate({ prompt: request, seed: 21, steps: 3, rounds: 1 }, recorder().context);
    session = {
      history: [
        { role: "user", text: request },
        { role: "assistant", text: first.trace[0]!.caption!, plan: first.plans[0]! },
      ],
      image: first.images[0]!,
      seed: first.seeds[0]!,
      sampler: "euler",
      plan: first.plans[0]!,
    };
  });

  afterAll(async () => {
    await engine?.dispose();
  });

  it("adding a grid-placed object repaints its cell with the same seed and keeps every other pixel", async () => {
    expect(first.plans[0]).toContain("top left ; 2 bottom right");
    const result = await engine.edit(
      session,
      { text: "add a small yellow square at the top right" },
      { steps: 3, rounds: 2 },
      recorder().context,
    );
    expect(result.plans[0]).toContain("top right");
    // Round 1 repairs the session image towards the new plan: the added square's cell, and any other cell
    // the describer reads as wrong in this noise-like fixture image.
    const round1 = result.trace[0]!;
    expect(round1.edit).toMatchObject({ strategy: "repair", reason: expect.stringContaining("top_right") });
    expect(round1.repair).toMatchObject({ from: 0, cells: expect.arrayContaining(["top_right"]) });
    expect(round1.repair!.plans.join(" ")).toContain("one small square");
    result.trace.forEach((round, k) => {
      expect(round.mode).toBe("inpaint");
      expect(round.seeds).toEqual([21 + k]);
      expect(round.settings.sampler).toBe("euler");
      // A later round repairs its best image so far, or (nothing to repair) inpaints the added cell again.
      const repair = round.repair ?? { from: 0, cells: ["top_right"] };
      const from = repair.from === 0 ? session.image! : result.trace[repair.from - 1]!.images[0]!;
      const mask = cellMask(repair.cells as Position[], 64, 64);
      const diff = changed(from, round.images[0]!);
      expect(diff.length).toBeGreaterThan(0);
      expect(diff.every((i) => mask.data[i] === 255)).toBe(true);
    });
  });

  it("a background change is composed from the new plan's image, rendered with the session's seed and sampler", async () => {
    const result = await engine.edit(
      session,
      { text: "make the background black" },
      { steps: 3, rounds: 1 },
      recorder().context,
    );
    const round = result.trace[0]!;
    expect(round.plan).toContain("background black");
    expect(round.edit).toMatchObject({
      strategy: "compose",
      reason: expect.stringContaining("background"),
    });
    expect(round).toMatchObject({ seeds: [21], settings: { sampler: "euler" } });
    expect(round.settings.strength).toBeUndefined();
  });

  it("a lock needs projection layers: this engine conditions through the text encoder", async () => {
    await expect(
      engine.edit(
        session,
        { text: "make the background black" },
        { steps: 3, lock: "layout" },
        recorder().context,
      ),
    ).rejects.toMatchObject({ status: 400, param: "lock", message: expect.stringContaining("projection") });
  });

  it("a mask from the request inpaints exactly there", async () => {
    const mask = { width: 64, height: 64, data: new Uint8Array(64 * 64) };
    for (let y = 0; y < 16; y++) mask.data.fill(255, y * 64, y * 64 + 16);
    const result = await engine.edit(
      session,
      { text: "add a small yellow square at the top right", mask },
      { steps: 3, rounds: 1 },
      recorder().context,
    );
    const round = result.trace[0]!;
    expect(round.edit).toMatchObject({ strategy: "mask" });
    expect(round.mode).toBe("inpaint");
    expect(changed(session.image!, round.images[0]!).every((i) => mask.data[i] === 255)).toBe(true);
  });
});

describe("edits keep untouched objects in their cells", () => {
  let engine: AgentEngine;
  let describer: SwitchDescriber;
  let state: SessionState;
  const squares = group({
    shape: "square",
    color: "green",
    size: "large",
    count: 2,
    placement: { kind: "free" },
  });
  const sessionPlan = printPlan(scene([squares]));
  const cellsWith = (...at: Position[]) =>
    POSITIONS.map((position) =>
      at.includes(position)
        ? { position, shape: "square", color: "green", size: "large", confidence: 0.9 }
        : { position, shape: null, color: "red", size: "small", confidence: 0.9 },
    ) as CellReading[];

  beforeAll(async () => {
    describer = await SwitchDescriber.load();
    engine = await loadFixtureAgent(describer, "embedded");
    const image = (
      await engine.generate({ plan: sessionPlan, seed: 4, steps: 2, rounds: 1 }, recorder().context)
    ).images[0]!;
    state = {
      history: [
        { role: "user", text: "two large green squares on a white background" },
        { role: "assistant", text: "two large green squares", plan: sessionPlan },
      ],
      image,
      seed: 4,
      sampler: "ddim",
      plan: sessionPlan,
    };
  });

  afterAll(async () => {
    await engine?.dispose();
  });

  it("an edited image read with them moved is critiqued for it, and the next round repairs them back", async () => {
    describer.reset();
    // The session image shows the squares on the left and right; the edited one at the top and bottom.
    const moved = printPlan(scene([squares], { background: "black" }));
    describer.script = [
      { plan: sessionPlan, cells: cellsWith("left", "right") },
      { plan: moved, cells: cellsWith("top", "bottom") },
    ];
    const result = await engine.edit(
      state,
      { text: "make the background black" },
      { steps: 2, rounds: 2 },
      recorder().context,
    );
    const [round1, round2] = result.trace;
    expect(round1!.plan).toContain("background black");
    expect(round1!.edit).toMatchObject({ strategy: "compose" });
    expect(round1!.mode).toBe("txt2img");
    // Fully covered pixels of the session's objects are copied; the background around them is new.
    const coverage = foregroundCoverage(state.image!);
    const differ = new Set(changed(state.image!, round1!.images[0]!));
    const cores = [...coverage.keys()].filter((i) => coverage[i] === 1);
    const background = [...coverage.keys()].filter((i) => coverage[i] === 0);
    expect(cores.length).toBeGreaterThan(0);
    expect(cores.filter((i) => differ.has(i))).toEqual([]);
    expect(background.filter((i) => differ.has(i)).length).toBeGreaterThan(0.9 * background.length);
    expect(round1!.critique!.text).toBe(
      "the green square should stay on the left; the green square should stay on the right",
    );
    expect(round2!.repair).toMatchObject({
      from: 1,
      cells: ["top", "left", "right", "bottom"],
      reason: "repaint large green square at left, large green square at right, erase top, erase bottom",
    });
    expect(round2!.mode).toBe("inpaint");
  });

  it("a background change under objects read wrong composes, then repairs them, in its first round", async () => {
    describer.reset();
    // The session image shows one of the two squares; the first round's image shows both.
    const black = printPlan(scene([squares], { background: "black" }));
    describer.script = [
      { plan: sessionPlan, cells: cellsWith("left") },
      { plan: black, cells: cellsWith("left", "right") },
    ];
    const { context, events } = recorder();
    const result = await engine.edit(
      state,
      { text: "make the background black" },
      { steps: 2, rounds: 2 },
      context,
    );
    expect(result.trace).toHaveLength(1);
    const [round] = result.trace;
    expect(round!.edit).toMatchObject({ strategy: "compose", reason: expect.stringContaining("repaint") });
    // One square more, in an empty cell: the one the session image shows stays where it is.
    expect(round!.repair).toMatchObject({
      from: 0,
      reason: expect.stringMatching(/^repaint large green square at/),
    });
    expect(round!.repair!.cells).toHaveLength(1);
    expect(round!.repair!.cells).not.toContain("left");
    expect(round!.mode).toBe("inpaint");
    // The whole plan, then one pass: progress counts through both.
    const steps = events.flatMap((e) => (e.type === "step" && e.round === 1 ? [`${e.step}/${e.steps}`] : []));
    expect(steps).toEqual(["1/4", "2/4", "3/4", "4/4"]);
  });
});

describe("locks", () => {
  const text = "same scene, watercolor";
  let engine: AgentEngine;
  let planned: Scene;
  let state: SessionState;

  beforeAll(async () => {
    const planner = await Planner.load("tests/fixtures/tiny-planner");
    // The planner is greedy: with no history it plans `text` the same way inside the engine.
    planned = parsePlan((await planner.plan([{ role: "user", content: text }])).text);
    await planner.dispose();
    const sessionPlan = printPlan({ ...planned, style: planned.style === "flat" ? "outline" : "flat" });
    engine = await loadFixtureAgent();
    const image = (
      await engine.generate({ plan: sessionPlan, seed: 8, steps: 2, rounds: 1 }, recorder().context)
    ).images[0]!;
    state = { history: [], image, seed: 8, sampler: "ddim", plan: sessionPlan };
  });

  afterAll(async () => {
    await engine?.dispose();
  });

  for (const lock of ["layout", "style"] as const) {
    it(`lock: "${lock}" renders txt2img with the session's seed, keeping that stream of its conditioning`, async () => {
      const { context, events } = recorder();
      const result = await engine.edit(state, { text }, { steps: 2, rounds: 2, lock }, context);
      expect(events.filter((e) => e.type === "conditioning").map((e) => "lock" in e && e.lock)).toEqual(
        result.trace.map(() => lock),
      );
      result.trace.forEach((round, k) => {
        expect(round.edit).toMatchObject({ strategy: `${lock}_lock`, reason: "the request's lock" });
        expect(round).toMatchObject({ mode: "txt2img", conditioning: "projection", seeds: [8 + k] });
      });
      expect(result.trace[0]!.plan).toBe(printPlan(planned));
    });
  }

  it("names the field for a lock it cannot apply", async () => {
    const edit = (s: SessionState, lock: string, image?: RgbImage) =>
      engine.edit(
        s,
        { text, ...(image && { image }) },
        { steps: 2, lock: lock as "layout" },
        recorder().context,
      );
    await expect(edit(state, "colour")).rejects.toMatchObject({ status: 400, param: "lock" });
    await expect(edit({ ...state, plan: null }, "layout")).rejects.toMatchObject({
      status: 400,
      param: "lock",
      message: expect.stringContaining("made from a plan"),
    });
    await expect(edit(state, "style", state.image!)).rejects.toMatchObject({
      status: 400,
      param: "lock",
      message: expect.stringContaining("uploaded"),
    });
  });
});

describe("locks with the released models", () => {
  it("the two locks and no lock render the same restyling edit three different ways", async () => {
    const engine = await AgentEngine.load({
      ldm: "models/ldm",
      planner: "models/planner",
      projection: "models/projection",
      describer: "models/describer",
      threads: 1,
    });
    try {
      const request = "a large red star at the top left on a white background, flat style";
      const first = await engine.generate(
        { prompt: request, seed: 4, steps: 8, rounds: 1 },
        recorder().context,
      );
      const state: SessionState = {
        history: [
          { role: "user", text: request },
          { role: "assistant", text: first.trace[0]!.caption!, plan: first.plans[0]! },
        ],
        image: first.images[0]!,
        seed: 4,
        sampler: "ddim",
        plan: first.plans[0]!,
      };
      const render = async (lock?: "layout" | "style") => {
        const settings = { steps: 8, rounds: 1, ...(lock && { lock }) };
        const result = await engine.edit(state, { text: "make it watercolor" }, settings, recorder().context);
        expect(result.plans[0]).toContain("watercolor");
        return result.images[0]!;
      };
      const [none, layout, style] = [await render(), await render("layout"), await render("style")];
      expect(changed(none, layout).length).toBeGreaterThan(0);
      expect(changed(none, style).length).toBeGreaterThan(0);
      expect(changed(layout, style).length).toBeGreaterThan(0);
    } finally {
      await engine.dispose();
    }
  });
});
