/**
 * The projection ablations' second baseline: the planner plans as in plan mode, but the plan reaches the
 * frozen denoiser as text — a full caption of the plan's scene (the captions its text encoder was trained
 * on) through that text encoder — instead of through the projection layers. It separates what planning
 * gains from what the projection gains.
 */
import { join } from "node:path";
import type { Generator, GeneratorOptions } from "../../evals/harness.ts";
import { captionsFor } from "../../evals/language/captions.ts";
import { createRng } from "../../evals/rng.ts";
import { encodePromptPair, loadDiffusionModel, txt2img } from "../../pipelines/index.ts";
import { type ChatMessage, Planner, type PlanResult } from "../../planner/planner.ts";
import { DEFAULTS } from "../defaults.ts";

export async function createPlanTextGenerator(options: GeneratorOptions): Promise<Generator> {
  const root = options.models ?? "models";
  const model = await loadDiffusionModel(join(root, "ldm"));
  const planner = await Planner.load(join(root, "planner"));
  return {
    async generate(request, seed) {
      const messages: ChatMessage[] = [];
      let planned: PlanResult | null = null;
      for (const turn of request.turns) {
        messages.push({ role: "user", content: turn });
        planned = await planner.plan(messages);
        messages.push({ role: "assistant", content: planned.text });
      }
      const caption = captionsFor(planned!.scene, createRng(0))[0]!;
      const conditioning = await encodePromptPair(model, caption, "");
      const result = await txt2img(model, conditioning, {
        steps: DEFAULTS.steps,
        guidance: DEFAULTS.guidance,
        scheduler: DEFAULTS.sampler,
        seed,
      });
      return result.images[0]!;
    },
    async close() {
      await Promise.all([planner.dispose(), model.dispose()]);
    },
  };
}
