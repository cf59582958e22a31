/**
 * The native baseline: the frozen model's own text encoder on the raw prompt (LDM's τθ path, no planner,
 * no projection). Edit dialogues have no session here: the turns are joined into one prompt.
 */
import { join } from "node:path";
import type { Generator, GeneratorOptions } from "../../evals/harness.ts";
import { encodePromptPair, loadDiffusionModel, txt2img } from "../../pipelines/index.ts";
import { DEFAULTS } from "../defaults.ts";

export async function createNativeGenerator(options: GeneratorOptions): Promise<Generator> {
  const model = await loadDiffusionModel(join(options.models ?? "models", "ldm"));
  return {
    async generate(request, seed) {
      const conditioning = await encodePromptPair(model, request.turns.join(". "), "");
      const result = await txt2img(model, conditioning, {
        steps: DEFAULTS.steps,
        guidance: DEFAULTS.guidance,
        scheduler: DEFAULTS.sampler,
        seed,
      });
      return result.images[0]!;
    },
    close: () => model.dispose(),
  };
}
