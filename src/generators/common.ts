/** What the eval generators share: one sampling pass with the service's defaults, and planning every turn. */
import type { ConditioningInput } from "../../pipelines/denoise.ts";
import type { RgbImage } from "../../pipelines/image.ts";
import type { DiffusionModel } from "../../pipelines/model-folder.ts";
import { txt2img } from "../../pipelines/txt2img.ts";
import type { ChatMessage, Planner } from "../../planner/planner.ts";
import { DEFAULTS } from "../defaults.ts";

/** txt2img with the defaults a user gets (steps, guidance, and the model folder's sampler). */
export async function sampleWithDefaults(
  model: DiffusionModel,
  conditioning: ConditioningInput,
  seed: number,
): Promise<RgbImage> {
  const result = await txt2img(model, conditioning, {
    steps: DEFAULTS.steps,
    guidance: DEFAULTS.guidance,
    seed,
  });
  return result.images[0]!;
}

/** The conversation with the planner's plan after every user turn (an edit restates the whole plan). */
export async function planTurns(planner: Planner, turns: readonly string[]): Promise<ChatMessage[]> {
  const messages: ChatMessage[] = [];
  for (const turn of turns) {
    messages.push({ role: "user", content: turn });
    messages.push({ role: "assistant", content: (await planner.plan(messages)).text });
  }
  return messages;
}
