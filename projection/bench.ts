/**
 * What the projection costs in a generation (a benchmark, not a test; issue 7 asks for ≤ 1%):
 *   npx tsx projection/bench.ts [--projection models/projection] [--planner models/planner] [--ldm models/ldm]
 *                               [--runs 20] [--steps 20]
 * Prints the median time of the planner's hidden-state pass, of one projection run (cache off), of a
 * txt2img generation (CFG, the model's default scheduler) on that conditioning, and the projection's share.
 */
import { parseArgs } from "node:util";
import { loadDiffusionModel } from "../pipelines/model-folder.ts";
import { txt2img } from "../pipelines/txt2img.ts";
import { Planner } from "../planner/planner.ts";
import { DEFAULTS } from "../src/defaults.ts";
import { loadProjection } from "./projection.ts";

const { values } = parseArgs({
  options: {
    projection: { type: "string", default: "models/projection" },
    planner: { type: "string", default: "models/planner" },
    ldm: { type: "string", default: "models/ldm" },
    runs: { type: "string", default: "20" },
    steps: { type: "string", default: String(DEFAULTS.steps) },
  },
  strict: true,
});
const runs = Number(values.runs);
const steps = Number(values.steps);

async function median(count: number, body: () => Promise<unknown>): Promise<number> {
  await body();
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await body();
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
}

const planner = await Planner.load(values.planner);
const ldm = await loadDiffusionModel(values.ldm);
const projection = await loadProjection(values.projection, { planner, denoiser: ldm, cacheSize: 0 });
const messages = [
  { role: "user" as const, content: "three yellow stars above a blue square on a black background" },
];
const plan =
  "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 above 2 ; 2 anywhere <OBJECT> 1 three medium stars ; 2 one medium square " +
  "<COLOR> 1 yellow ; 2 blue ; background black <LIGHTING> daylight <IMG_END>";
const hidden = await planner.hiddenStates(messages, plan, projection.layers);
const tHidden = await median(runs, () => planner.hiddenStates(messages, plan, projection.layers));
const tProject = await median(runs, () => projection.project(hidden));
const conditioning = await projection.project(hidden);
const tGenerate = await median(Math.max(1, Math.floor(runs / 4)), () =>
  txt2img(ldm, conditioning, { steps, guidance: DEFAULTS.guidance, seed: 1 }),
);
const total = tHidden + tProject + tGenerate;
const ms = (t: number) => `${t.toFixed(2).padStart(9)} ms`;
console.log(
  `plan tokens ${hidden.length}, layers ${projection.layers.join(",")}, M ${projection.manifest.M}`,
);
console.log(`planner hidden states      ${ms(tHidden)}`);
console.log(`projection (one run)       ${ms(tProject)}`);
console.log(`txt2img, ${steps} steps, CFG     ${ms(tGenerate)}`);
console.log(`projection share           ${((100 * tProject) / total).toFixed(3).padStart(9)} %`);
await projection.dispose();
await planner.dispose();
await ldm.dispose();
