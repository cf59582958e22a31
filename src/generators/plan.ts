/**
 * Plan mode, single pass: the planner LLM plans each turn of the conversation (an edit restates the whole
 * plan), the projection layers turn the last plan's hidden states into conditioning, and the frozen
 * denoiser samples once. No critique loop (that is the agent mode). For the preservation figure, an edit
 * dialogue's previous plan is rendered too, with the same seed.
 */
import { join } from "node:path";
import type { Generator, GeneratorOptions } from "../../evals/harness.ts";
import { loadDiffusionModel } from "../../pipelines/index.ts";
import { Planner } from "../../planner/planner.ts";
import { loadProjection } from "../../projection/projection.ts";
import { planTurns, sampleWithDefaults } from "./common.ts";

export async function createPlanGenerator(options: GeneratorOptions): Promise<Generator> {
  const root = options.models ?? "models";
  const model = await loadDiffusionModel(join(root, "ldm"));
  const planner = await Planner.load(join(root, "planner"));
  const projection = await loadProjection(join(root, "projection"), { planner, denoiser: model });
  return {
    async generate(request, seed) {
      const messages = await planTurns(planner, request.turns);
      const render = async (turn: number) => {
        // The conversation up to this turn's request, and the plan that answers it.
        const context = messages.slice(0, 2 * turn + 1);
        const conditioning = await projection.condition(planner, context, messages[2 * turn + 1]!.content);
        return sampleWithDefaults(model, conditioning, seed);
      };
      const last = request.turns.length - 1;
      // Single pass, no session: the image before an edit is the previous plan rendered with the same seed.
      if (last > 0 && request.onTurn) request.onTurn(last - 1, await render(last - 1));
      return render(last);
    },
    async close() {
      await Promise.all([projection.dispose(), planner.dispose(), model.dispose()]);
    },
  };
}
