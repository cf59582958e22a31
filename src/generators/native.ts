/**
 * The native baseline: the frozen model's own text encoder on the raw prompt (LDM's τθ path, no planner,
 * no projection). Edit dialogues have no session here: the turns are joined into one prompt (and, for the
 * preservation figure, the turns before the last one are rendered too, with the same seed).
 */
import { join } from "node:path";
import type { Generator, GeneratorOptions } from "../../evals/harness.ts";
import { encodePromptPair, loadDiffusionModel } from "../../pipelines/index.ts";
import { sampleWithDefaults } from "./common.ts";

export async function createNativeGenerator(options: GeneratorOptions): Promise<Generator> {
  const model = await loadDiffusionModel(join(options.models ?? "models", "ldm"));
  return {
    async generate(request, seed) {
      const render = async (turns: readonly string[]) =>
        sampleWithDefaults(model, await encodePromptPair(model, turns.join(". "), ""), seed);
      const last = request.turns.length - 1;
      if (last > 0 && request.onTurn) request.onTurn(last - 1, await render(request.turns.slice(0, last)));
      return render(request.turns);
    },
    close: () => model.dispose(),
  };
}
