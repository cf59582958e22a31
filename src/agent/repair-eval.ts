/**
 * How often one repair pass (cell-repair.ts) draws what it is asked to: for a sample of single-turn eval
 * prompts, the plan is rendered, an empty cell of the image (by the evaluator's oracle detector: this is a
 * measurement, the loop never sees it) is repainted under a plan that pins one object there, and the oracle
 * reads that cell again; per size, how often it shows the object's shape and colour, and its size too.
 * Repainted as the loop does (`transplant`: the plan rendered whole, the cell transplanted, matte.ts) and by
 * inpainting the cell (`inpaint`). Also how often an occupied cell repainted under a plan whose object lies
 * elsewhere comes out empty, both ways.
 *
 *   npx tsx src/agent/repair-eval.ts [--prompts evals/prompts/shapes-geneval.jsonl] [--every 12] [--models models]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { detect } from "../../evals/detector.ts";
import { printPlan } from "../../evals/language/plan.ts";
import { readPromptFile } from "../../evals/language/prompt-file.ts";
import { positionAt } from "../../evals/layout.ts";
import { COLORS, POSITIONS, type Position, type Scene, SHAPES, SIZES } from "../../evals/scene.ts";
import type { RgbImage } from "../../pipelines/image.ts";
import { loadDiffusionModel } from "../../pipelines/model-folder.ts";
import { Planner } from "../../planner/planner.ts";
import { loadProjection } from "../../projection/projection.ts";
import { DEFAULTS } from "../defaults.ts";
import { captionForScene, samplePass } from "../service/generation.ts";
import { cellMask } from "./edit-strategy.ts";
import { transplant } from "./matte.ts";

const { values } = parseArgs({
  options: {
    prompts: { type: "string", default: "evals/prompts/shapes-geneval.jsonl" },
    every: { type: "string", default: "12" },
    models: { type: "string", default: "models" },
  },
  strict: true,
});
const root = values.models!;
const model = await loadDiffusionModel(join(root, "ldm"));
const planner = await Planner.load(join(root, "planner"));
const projection = await loadProjection(join(root, "projection"), { planner, denoiser: model });
const context = { onEvent: () => {}, signal: new AbortController().signal };
const settings = { steps: DEFAULTS.steps, guidance: DEFAULTS.guidance };
const condition = (scene: Scene) =>
  projection.condition(planner, [{ role: "user", content: captionForScene(scene) }], printPlan(scene));
/** The oracle's objects with their cells (components without a finite centre have none and are left out). */
const cellsOf = (image: Parameters<typeof detect>[0]) =>
  detect(image)
    .objects.filter((o) => Number.isFinite(o.cx) && Number.isFinite(o.cy))
    .map((o) => ({ ...o, position: positionAt(o.cx, o.cy) }));

const every = Number(values.every);
const prompts = readPromptFile(values.prompts!)
  .filter((p) => !p.turns)
  .filter((_, i) => i % every === 0);
const tally = () => ({ tries: 0, kind: 0, exact: 0 });
const drawn = {
  transplant: Object.fromEntries(SIZES.map((size) => [size, tally()])),
  inpaint: Object.fromEntries(SIZES.map((size) => [size, tally()])),
};
const erased = { tries: 0, transplant: 0, inpaint: 0 };
/** The cell repainted both ways: the loop's transplant of the whole rendering, and inpainting. */
const repaint = async (base: RgbImage, cell: Position, scene: Scene, seed: number) => {
  const mask = cellMask([cell], base.width, base.height);
  const conditioned = await condition(scene);
  const whole = (await samplePass(model, conditioned, null, { ...settings, seed }, 2, context)).images[0]!;
  const source = { image: base, mask, strength: 1 };
  return {
    transplant: transplant(base, whole, mask),
    inpaint: (await samplePass(model, conditioned, source, { ...settings, seed }, 2, context)).images[0]!,
  };
};
for (const [k, prompt] of prompts.entries()) {
  const planned = await planner.plan([{ role: "user", content: prompt.prompt! }]);
  const base = (
    await samplePass(model, await condition(planned.scene), null, { ...settings, seed: k }, 1, context)
  ).images[0]!;
  const seen = cellsOf(base);
  const empty = POSITIONS.filter((p) => !seen.some((o) => o.position === p));
  if (empty.length > 0) {
    const cell = empty[k % empty.length]!;
    const shape = SHAPES[k % SHAPES.length]!;
    const color = COLORS[(3 * k) % COLORS.length]!;
    for (const size of SIZES) {
      const object = { shape, color, size, count: 1, placement: { kind: "grid" as const, position: cell } };
      const images = await repaint(base, cell, { ...planned.scene, objects: [object] }, 100 + k);
      for (const way of ["transplant", "inpaint"] as const) {
        const there = cellsOf(images[way]).filter(
          (o) => o.position === cell && o.shape === shape && o.color === color,
        );
        const count = drawn[way][size]!;
        count.tries++;
        if (there.length > 0) count.kind++;
        if (there.some((o) => o.size === size)) count.exact++;
      }
    }
  }
  // Erase one occupied cell under a plan naming an object that stays (outside the mask).
  if (seen.length >= 2) {
    const [gone, kept] = [seen[0]!, seen.find((o) => o.position !== seen[0]!.position)];
    if (kept) {
      const object = {
        shape: kept.shape,
        color: kept.color,
        size: kept.size,
        count: 1,
        placement: { kind: "grid" as const, position: kept.position },
      };
      const images = await repaint(base, gone.position, { ...planned.scene, objects: [object] }, 200 + k);
      erased.tries++;
      for (const way of ["transplant", "inpaint"] as const)
        if (!cellsOf(images[way]).some((o) => o.position === gone.position)) erased[way]++;
    }
  }
}
console.log(JSON.stringify({ prompts: prompts.length, drawn, erased }, null, 2));
await Promise.all([projection.dispose(), planner.dispose(), model.dispose()]);
