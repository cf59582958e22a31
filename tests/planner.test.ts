import { cpSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "@huggingface/transformers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePlan } from "../evals/language/plan.ts";
import { loadDecoderLLM } from "../planner/llm.ts";
import { Planner } from "../planner/planner.ts";
import { ensureTappedModel } from "../planner/tap.ts";

// A barely trained tiny Llama: the grammar, not the weights, must make its plans parse.
const FIXTURE = "tests/fixtures/tiny-planner";

describe("planner on a tiny transformers.js Llama", () => {
  let planner: Planner;
  beforeAll(async () => {
    planner = await Planner.load(FIXTURE);
  });
  afterAll(() => planner.dispose());

  it("loads through @huggingface/transformers and knows the planning tokens", () => {
    expect(planner.native).toBe(true);
    expect(planner.llm.config.model_type).toBe("llama");
    expect(planner.llm.hiddenStateLayers).toEqual([0, 1, 2]);
  });

  it("always produces a plan that parses, greedy and sampled", async () => {
    const requests = ["a red circle", "two blue stars above a square, watercolor", "???", "make it bigger"];
    for (const content of requests) {
      const greedy = await planner.plan([{ role: "user", content }]);
      expect(parsePlan(greedy.text)).toEqual(greedy.scene);
      for (const seed of [1, 2, 3]) {
        const sampled = await planner.plan([{ role: "user", content }], { temperature: 1.5, seed });
        expect(parsePlan(sampled.text)).toEqual(sampled.scene);
      }
    }
  });

  it("gives the same sampled plan for the same seed", async () => {
    const messages = [{ role: "user" as const, content: "three green triangles on a sky background" }];
    const a = await planner.plan(messages, { temperature: 2, seed: 7 });
    const b = await planner.plan(messages, { temperature: 2, seed: 7 });
    expect(a.text).toBe(b.text);
  });

  it("streams the plan's tokens as they are generated", async () => {
    const pieces: string[] = [];
    const result = await planner.plan([{ role: "user", content: "a star" }], {
      onToken: (t) => pieces.push(t),
    });
    expect(pieces.join("").trim().startsWith("<IMG_BEGIN>")).toBe(true);
    expect(pieces.join("")).toContain("<IMG_END>");
    expect(result.text.startsWith("<IMG_BEGIN>")).toBe(true);
  });

  it("returns hidden states of exactly the plan span, for each layer", async () => {
    const messages = [{ role: "user" as const, content: "a red circle" }];
    const plan = (await planner.plan(messages)).text;
    const states = await planner.hiddenStates(messages, plan);
    const span = plan.split(" ").length; // word-level tokenizer: one token per plan word
    expect(states.length).toBe(span);
    expect(states.layers).toEqual([0, 1, 2]);
    for (const layer of states.states) expect(layer.length).toBe(span * planner.llm.config.hidden_size);
    const chosen = await planner.hiddenStates(messages, plan, [2]);
    expect(chosen.states[0]).toEqual(states.states[2]);
  });

  it("revises a plan from a critique (revision mode is one more turn)", async () => {
    const messages = [{ role: "user" as const, content: "a red circle" }];
    const first = await planner.plan(messages);
    const revised = await planner.revise(messages, first.text, "the circle should be red, not blue");
    expect(parsePlan(revised.text)).toEqual(revised.scene);
  });

  it("rejects bad input with an error naming the field", async () => {
    await expect(planner.plan([{ role: "user", content: "" }])).rejects.toThrow(
      /messages\.0\.content: must not be empty/,
    );
    await expect(planner.plan([{ role: "user", content: "x".repeat(1025) }])).rejects.toThrow(/at most 1024/);
    await expect(planner.plan([{ role: "user", content: 42 as unknown as string }])).rejects.toThrow(
      /must be text/,
    );
    await expect(planner.plan([])).rejects.toThrow(/^messages:/);
  });
});

describe("hidden-state tap", () => {
  it("adds hidden_states outputs to a graph exported without them, with the native export's values", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tap-"));
    cpSync("tests/fixtures/tiny-planner-untapped", dir, { recursive: true });
    const untapped = await loadDecoderLLM(dir);
    expect(untapped.hiddenStateLayers).toEqual([]);
    await untapped.dispose();

    const file = ensureTappedModel(dir, 2, 32);
    const written = statSync(join(dir, "onnx", file)).mtimeMs;
    expect(ensureTappedModel(dir, 2, 32)).toBe(file);
    expect(statSync(join(dir, "onnx", file)).mtimeMs).toBe(written); // cached, not rewritten

    const tapped = await loadDecoderLLM(dir, { file });
    const native = await loadDecoderLLM(FIXTURE);
    expect(tapped.hiddenStateLayers).toEqual([0, 1, 2]);
    const ids = [2, 11, 12, 13, 3, 6, 7];
    const inputs = {
      input_ids: new Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]),
      attention_mask: new Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
    };
    const run = (m: typeof tapped) =>
      (m.model as unknown as (x: unknown) => Promise<Record<string, Tensor>>)(inputs);
    const [a, b] = [await run(tapped), await run(native)];
    for (const layer of [0, 1, 2]) {
      expect(a[`hidden_states.${layer}`]!.dims).toEqual([1, ids.length, 32]);
      expect(Array.from(a[`hidden_states.${layer}`]!.data as Float32Array)).toEqual(
        Array.from(b[`hidden_states.${layer}`]!.data as Float32Array),
      );
    }
    await Promise.all([tapped.dispose(), native.dispose()]);
  });
});
