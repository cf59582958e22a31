/**
 * Plan mode, single pass: the planner LLM plans each turn of the conversation (an edit restates the whole
 * plan), the projection layers turn the last plan's hidden states into conditioning, and the frozen
 * denoiser samples once. No critique loop (that is the agent mode).
 */
import { join } from "node:path";
import type { Generator, GeneratorOptions } from "../../evals/harness.ts";
import { loadDiffusionModel, txt2img } from "../../pipelines/index.ts";
import { type ChatMessage, Planner } from "../../planner/planner.ts";
import { loadProjection } from "../../projection/projection.ts";
import { DEFAULTS } from "../defaults.ts";

export async function createPlanGenerator(options: GeneratorOptions): Promise<Generator> {
  const root = options.models ?? "models";
  const model = await loadDiffusionModel(join(root, "ldm"));
  const planner = await Planner.load(join(root, "planner"));
  const projection = await loadProjection(join(root, "projection"), { planner, denoiser: model });
  return {
    async generate(request, seed) {
      const messages: ChatMessage[] = [];
      let plan = "";
      for (const turn of request.turns) {
        messages.push({ role: "user", content: turn });
        plan = (await planner.plan(messages)).text;
        messages.push({ role: "assistant", content: plan });
      }
      const conditioning = await projection.condition(planner, messages.slice(0, -1), plan);
      const result = await txt2img(model, conditioning, {
        steps: DEFAULTS.steps,
        guidance: DEFAULTS.guidance,
        scheduler: DEFAULTS.sampler,
        seed,
      });
      return result.images[0]!;
    },
    async close() {
      await Promise.all([projection.dispose(), planner.dispose(), model.dispose()]);
    },
  };
}
