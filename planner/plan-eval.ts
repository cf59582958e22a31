/**
 * The planner alone on an eval prompt set: each prompt's turns are planned as one conversation and the
 * last plan is drawn by the shapes world's renderer, which draws a plan exactly, then judged like any
 * generated image. The score is the planner's share of every mode that goes through a plan: the ceiling
 * of `eval --mode plan` with a perfect projection and denoiser.
 */
import type { Generator } from "../evals/harness.ts";
import { runEval } from "../evals/harness.ts";
import { printPlan } from "../evals/language/plan.ts";
import type { EvalPrompt } from "../evals/language/prompt-file.ts";
import { layoutScene } from "../evals/layout.ts";
import { renderScene } from "../evals/render.ts";
import type { Report } from "../evals/report.ts";
import type { Scene } from "../evals/scene.ts";
import type { ChatMessage, Planner, PlanOptions } from "./planner.ts";

export function renderedPlanGenerator(planner: Planner, options: PlanOptions = {}): Generator {
  return {
    async generate(request, seed) {
      const messages: ChatMessage[] = [];
      let scene: Scene | null = null;
      for (const turn of request.turns) {
        messages.push({ role: "user", content: turn });
        ({ scene } = await planner.plan(messages, options));
        messages.push({ role: "assistant", content: printPlan(scene) });
      }
      return renderScene(scene!, layoutScene(scene!, seed), seed);
    },
  };
}

export function planEval(
  planner: Planner,
  prompts: readonly EvalPrompt[],
  promptsFile: string,
  options: PlanOptions & { out?: string; seed?: number } = {},
): Promise<Report> {
  return runEval({
    prompts,
    generator: renderedPlanGenerator(planner, options),
    mode: "planner (plans drawn by the renderer)",
    imagesPerPrompt: 1,
    seed: options.seed ?? 0,
    promptsFile,
    out: options.out,
  });
}
