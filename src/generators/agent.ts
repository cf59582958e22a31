/**
 * Agent mode: the critique loop (src/agent/engine.ts) with its default rounds. A prompt is one generation;
 * an edit dialogue is one session: the first turn a generation, every later turn an edit of the previous
 * turn's image through the edit path (strategy per edit kind, same seed and sampler), each with its own
 * critique loop. The models folder needs ldm/, planner/ and describer/; projection/ is used when present.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Generator, GeneratorOptions } from "../../evals/harness.ts";
import { AgentEngine } from "../agent/engine.ts";
import { DEFAULTS } from "../defaults.ts";
import type { GenerateResult, RunContext, SessionTurn } from "../service/engine.ts";

export async function createAgentGenerator(options: GeneratorOptions): Promise<Generator> {
  const root = options.models ?? "models";
  const engine = await AgentEngine.load({
    ldm: join(root, "ldm"),
    planner: join(root, "planner"),
    projection: existsSync(join(root, "projection")) ? join(root, "projection") : null,
    describer: join(root, "describer"),
  });
  const settings = { steps: DEFAULTS.steps, guidance: DEFAULTS.guidance };
  const context = (): RunContext => ({ onEvent: () => {}, signal: new AbortController().signal });
  return {
    async generate(request, seed) {
      const [first, ...edits] = request.turns;
      let result: GenerateResult = await engine.generate({ ...settings, prompt: first!, seed }, context());
      request.onTurn?.(0, result.images[0]!);
      const history: SessionTurn[] = [];
      let text = first!;
      for (const [k, edit] of edits.entries()) {
        const best = result.trace.find((round) => round.images[0] === result.images[0])!;
        history.push(
          { role: "user", text },
          { role: "assistant", text: best.caption ?? "", plan: result.plans[0] ?? null },
        );
        const state = {
          history,
          image: result.images[0]!,
          seed: result.seeds[0]!,
          sampler: best.settings.sampler,
          plan: result.plans[0] ?? null,
        };
        result = await engine.edit(state, { text: edit }, settings, context());
        request.onTurn?.(k + 1, result.images[0]!);
        text = edit;
      }
      return result.images[0]!;
    },
    close: () => engine.dispose(),
  };
}
