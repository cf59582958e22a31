import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Planner } from "../planner/planner.ts";

/** The committed planner (models/planner), through @huggingface/transformers like every other decoder. */
describe("embedded planner", () => {
  let planner: Planner;
  beforeAll(async () => {
    planner = await Planner.load("models/planner");
  });
  afterAll(() => planner.dispose());

  it("plans a plain request field by field", async () => {
    const result = await planner.plan([
      { role: "user", content: "draw a large red circle on a black background" },
    ]);
    expect(result.scene).toEqual({
      objects: [{ shape: "circle", color: "red", size: "large", count: 1, placement: { kind: "free" } }],
      background: "black",
      style: "flat",
      lighting: "daylight",
    });
    expect(result.repairs).toEqual([]);
  });

  it("edits a plan in context, changing only what was asked", async () => {
    const first = await planner.plan([{ role: "user", content: "draw two small green stars, watercolor" }]);
    const edited = await planner.plan([
      { role: "user", content: "draw two small green stars, watercolor" },
      { role: "assistant", content: first.text },
      { role: "user", content: "now make the stars blue" },
    ]);
    expect(edited.scene).toEqual({
      ...first.scene,
      objects: [{ ...first.scene.objects[0]!, color: "blue" }],
    });
  });

  it("returns [S × hidden_size] hidden states of the plan span for every layer", async () => {
    const messages = [{ role: "user" as const, content: "a small yellow square at the top left" }];
    const plan = await planner.plan(messages);
    const states = await planner.hiddenStates(messages, plan.text);
    const layers = planner.llm.config.num_hidden_layers;
    expect(states.layers).toEqual(Array.from({ length: layers + 1 }, (_, i) => i));
    expect(states.length).toBe(plan.tokens);
    for (const layer of states.states)
      expect(layer.length).toBe(plan.tokens * planner.llm.config.hidden_size);
  });
});
