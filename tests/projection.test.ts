/**
 * The projection runtime on real ONNX sessions: the committed tiny projection (training/projection_fixture.sh)
 * between the tiny planner and the tiny LDM fixtures — shapes, the learned null, agreement with the training
 * code's numbers, the plan cache, refusal of models it was not trained for, edit controls, and one guided
 * call of the tiny U-Net on its output.
 */
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DiffusionModel, loadDiffusionModel } from "../pipelines/model-folder.ts";
import { type ChatMessage, Planner } from "../planner/planner.ts";
import { applyEditControls, loadProjection, type Projection } from "../projection/projection.ts";
import { planSlots } from "../projection/slots.ts";
import { AtelierError } from "../src/errors.ts";

const DIR = "tests/fixtures/tiny-projection";
const PLANNER = "tests/fixtures/tiny-planner";
const LDM = "tests/fixtures/tiny-ldm";
type Summary = { dims: number[]; head: number[] };
type Case = { messages: ChatMessage[]; plan: string; outputs: Record<string, Summary> };
const { cases } = JSON.parse(readFileSync(join(DIR, "reference.json"), "utf8")) as { cases: Case[] };
const reference = cases[0]!;
const messages = reference.messages;

function expectHead(actual: Float32Array, expected: Summary): void {
  const head = Array.from(actual.slice(0, expected.head.length));
  const err = Math.max(...head.map((v, i) => Math.abs(v - expected.head[i]!)));
  expect(err).toBeLessThan(1e-4);
}

async function rejection(promise: Promise<unknown>): Promise<AtelierError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AtelierError);
  return error as AtelierError;
}

describe("projection runtime (tiny fixtures)", () => {
  let planner: Planner;
  let ldm: DiffusionModel;
  let projection: Projection;
  const work = mkdtempSync(join(tmpdir(), "atelier-projection-"));

  beforeAll(async () => {
    planner = await Planner.load(PLANNER);
    ldm = await loadDiffusionModel(LDM, { threads: 1 });
    projection = await loadProjection(DIR, { planner, denoiser: ldm });
  });
  afterAll(async () => {
    await projection?.dispose();
    await planner?.dispose();
    await ldm?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  it("reads the manifest: planner layers, widths, M", () => {
    const m = projection.manifest;
    expect(m.d_llm).toBe(planner.llm.config.hidden_size);
    expect(m.d_cond).toBe(ldm.tokenDim);
    expect(projection.layers).toEqual(m.layers);
    expect(m.layers.length).toBe(m.k);
    expect(m.layers.every((l) => planner.llm.hiddenStateLayers.includes(l))).toBe(true);
  });

  it("projects the plan span to M×d_cond tokens and a pooled vector, with the learned null beside them", async () => {
    const { M, d_cond } = projection.manifest;
    const { cond, uncond } = await projection.condition(planner, messages, reference.plan);
    expect(cond.tokenShape).toEqual([M, d_cond]);
    expect(cond.tokens.length).toBe(M * d_cond);
    expect(cond.pooled!.length).toBe(d_cond);
    expect(uncond.tokenShape).toEqual([M, d_cond]);
    expect(uncond.tokens.length).toBe(M * d_cond);
    expect(uncond.pooled!.length).toBe(d_cond);
    expect(cond.tokens.every(Number.isFinite) && cond.pooled!.every(Number.isFinite)).toBe(true);
    expect(Array.from(cond.tokens)).not.toEqual(Array.from(uncond.tokens));
    // Another plan: other tokens, the same null.
    const other = await projection.condition(
      planner,
      messages,
      reference.plan.replace("red", "blue").replace("circle", "star"),
    );
    expect(Array.from(other.cond.tokens)).not.toEqual(Array.from(cond.tokens));
    expect(other.uncond).toBe(uncond);
  });

  it("gives the training code's numbers for a request and for an edit (planner.ts ≡ training/projection.py)", async () => {
    expect(cases.length).toBe(2);
    expect(cases[1]!.messages.map((m) => m.role)).toEqual(["user", "assistant", "user"]);
    for (const c of cases) {
      const { cond, uncond } = await projection.condition(planner, c.messages, c.plan);
      expectHead(cond.tokens, c.outputs.encoder_hidden_states!);
      expectHead(cond.pooled!, c.outputs.text_embeds!);
      expectHead(uncond.tokens, c.outputs.null_encoder_hidden_states!);
      expectHead(uncond.pooled!, c.outputs.null_text_embeds!);
    }
  });

  it("computes a plan's conditioning once; later steps and rounds hit the cache", async () => {
    const plan = reference.plan.replace("center", "top left");
    const before = { ...projection.stats };
    const first = await projection.condition(planner, messages, plan);
    const again = await projection.condition(planner, messages, plan);
    expect(projection.stats.runs).toBe(before.runs + 1);
    expect(projection.stats.misses).toBe(before.misses + 1);
    expect(projection.stats.hits).toBe(before.hits + 1);
    expect(again).toBe(first);
    // The same hidden states through project(): keyed by content, so one run for both calls.
    const hidden = await planner.hiddenStates(messages, plan, projection.layers);
    const a = await projection.project(hidden);
    const b = await projection.project({ ...hidden, states: hidden.states.map((s) => s.slice()) });
    expect(b).toBe(a);
    expect(projection.stats.runs).toBe(before.runs + 2);
    expectHead(a.cond.tokens, { dims: [], head: Array.from(first.cond.tokens.slice(0, 16)) });
    // Another conversation before the same plan is another plan context: computed anew.
    await projection.condition(planner, [{ role: "user", content: "a tiny red circle" }], plan);
    expect(projection.stats.runs).toBe(before.runs + 3);
  });

  it("refuses a planner it was not trained for, naming the planner", async () => {
    const error = await rejection(
      loadProjection(DIR, { planner: "tests/fixtures/tiny-planner-untapped", denoiser: ldm }),
    );
    expect(error.code).toBe("projection_mismatch");
    expect(error.param).toBe("planner");
    expect(error.message).toMatch(/trained for the planner .*sha256/);
  });

  it("refuses a denoiser it was not trained for, naming the denoiser", async () => {
    const copy = join(work, "ldm");
    cpSync(LDM, copy, { recursive: true });
    appendFileSync(join(copy, "unet", "model.onnx"), Buffer.from([0]));
    const error = await rejection(loadProjection(DIR, { planner, denoiser: copy }));
    expect(error.code).toBe("projection_mismatch");
    expect(error.param).toBe("denoiser");
    expect(error.message).toContain(join(copy, "unet", "model.onnx"));
  });

  it("rejects hidden states of other layers or another width, naming the field", async () => {
    const hidden = await planner.hiddenStates(messages, reference.plan, projection.layers);
    const wrongLayers = { ...hidden, layers: [0, ...hidden.layers.slice(1)] };
    expect((await rejection(projection.project(wrongLayers))).param).toBe("hiddenStates.layers");
    const short = { ...hidden, states: hidden.states.map((s) => s.slice(1)) };
    expect((await rejection(projection.project(short))).param).toBe("hiddenStates.states.0");
  });

  it("style lock keeps c_global, layout lock keeps C_tokens; both at once is refused", async () => {
    const previous = await projection.condition(planner, messages, reference.plan);
    const plan = reference.plan.replace("flat", "watercolor").replace("white", "black");
    const next = await projection.condition(planner, messages, plan);
    const styled = await projection.condition(planner, messages, plan, { previous, styleLock: true });
    expect(styled.cond.tokens).toBe(next.cond.tokens);
    expect(styled.cond.pooled).toBe(previous.cond.pooled);
    const relaid = applyEditControls(next, { previous, layoutLock: true });
    expect(relaid.cond.tokens).toBe(previous.cond.tokens);
    expect(relaid.cond.pooled).toBe(next.cond.pooled);
    expect(relaid.uncond).toBe(next.uncond);
    expect(() => applyEditControls(next, { previous, styleLock: true, layoutLock: true })).toThrow(
      AtelierError,
    );
    expect(() => applyEditControls(next, { styleLock: true })).toThrow(/previous/);
  });

  it("conditions the tiny U-Net: cond and null in one guided denoiser call", async () => {
    const { cond, uncond } = await projection.condition(planner, messages, reference.plan);
    const denoiser = ldm.createDenoiser([cond, uncond], { width: ldm.width, height: ldm.height });
    const size = ldm.latentChannels * (ldm.height / ldm.vaeScaleFactor) * (ldm.width / ldm.vaeScaleFactor);
    const sample = Float32Array.from({ length: 2 * size }, (_, i) => Math.sin(0.37 * (i % size)));
    const eps = await denoiser.run(sample, 500);
    expect(eps.length).toBe(2 * size);
    expect(eps.every(Number.isFinite)).toBe(true);
  });
});

describe("object slots of plan tokens (projection/slots.ts ≡ training/projection.py plan_slots)", () => {
  const plan =
    "<IMG_BEGIN> <STYLE> outline <LAYOUT> 1 anywhere ; 2 anywhere ; 3 above 1 <OBJECT> 1 one medium cross ; " +
    "2 one medium triangle ; 3 two small squares <COLOR> 1 yellow ; 2 red ; 3 blue ; background gray " +
    "<LIGHTING> dim <IMG_END>";
  it("gives every token of object K's entries slot K and the rest 0", () => {
    // As plan_slots prints them for this plan.
    expect(planSlots(plan.split(" "), 9)).toEqual([
      0, 0, 0, 0, 1, 1, 0, 2, 2, 0, 3, 3, 3, 0, 1, 1, 1, 1, 0, 2, 2, 2, 2, 0, 3, 3, 3, 3, 0, 1, 1, 0, 2, 2, 0,
      3, 3, 0, 0, 0, 0, 0, 0,
    ]);
  });
  it("clamps objects beyond the table to its last slot, and reads tokens with spacing", () => {
    const slots = planSlots(
      plan.split(" ").map((t) => ` ${t}`),
      3,
    );
    expect(Math.max(...slots)).toBe(2);
    expect(slots.slice(10, 13)).toEqual([2, 2, 2]);
  });
});
