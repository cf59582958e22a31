/**
 * The projection ablations' second baseline: the planner plans as in plan mode, but the plan reaches the
 * frozen denoiser as text — a full caption of the plan's scene (the captions its text encoder was trained
 * on) through that text encoder — instead of through the projection layers. It separates what planning
 * gains from what the projection gains. For the preservation figure, an edit dialogue's previous plan is
 * rendered too, with the same seed.
 */
import { join } from "node:path";
import type { Generator, GeneratorOptions } from "../../evals/harness.ts";
import { captionsFor } from "../../evals/language/captions.ts";
import { parsePlan } from "../../evals/language/plan.ts";
import { createRng } from "../../evals/rng.ts";
import { encodePromptPair, loadDiffusionModel } from "../../pipelines/index.ts";
import { Planner } from "../../planner/planner.ts";
import { planTurns, sampleWithDefaults } from "./common.ts";

export async function createPlanTextGenerator(options: GeneratorOptions): Promise<Generator> {
  const root = options.models ?? "models";
  const model = await loadDiffusionModel(join(root, "ldm"));
  const planner = await Planner.load(join(root, "planner"));
  return {
    async generate(request, seed) {
      const messages = await planTurns(planner, request.turns);
      const render = async (turn: number) => {
        const caption = captionsFor(parsePlan(messages[2 * turn + 1]!.content), createRng(0))[0]!;
        return sampleWithDefaults(model, await encodePromptPair(model, caption, ""), seed);
      };
      const last = request.turns.length - 1;
      if (last > 0 && request.onTurn) request.onTurn(last - 1, await render(last - 1));
      return render(last);
    },
    async close() {
      await Promise.all([planner.dispose(), model.dispose()]);
    },
  };
}
