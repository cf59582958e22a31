/**
 * Throughput of the shapes world on one core (a benchmark, not a test):
 *   npx tsx evals/bench-world.ts [N]
 * Prints images/s for rendering alone (layouts precomputed), layout + render, and complete dataset items
 * (sampling with split filtering, layout, render, captions, plan), each after a warm-up pass that fills the
 * renderer's coverage-mask cache as a long export would.
 */
import { datasetItem } from "./dataset.ts";
import { layoutScene } from "./layout.ts";
import { renderScene } from "./render.ts";
import { createRng } from "./rng.ts";
import { sampleScene } from "./sample.ts";

const n = Number(process.argv[2] ?? 5000);
const rng = createRng(7);
const scenes = Array.from({ length: n }, () => sampleScene(rng));
const layouts = scenes.map((scene, i) => layoutScene(scene, i));

function rate(label: string, count: number, body: (i: number) => void): void {
  for (let i = 0; i < count; i++) body(i);
  const started = performance.now();
  for (let i = 0; i < count; i++) body(i);
  const seconds = (performance.now() - started) / 1000;
  console.log(`${label.padEnd(34)} ${(count / seconds).toFixed(0).padStart(6)} images/s`);
}

rate("render (layout given)", n, (i) => renderScene(scenes[i]!, layouts[i], i));
rate("layout + render", n, (i) => renderScene(scenes[i]!, undefined, i));
rate("dataset item, train split", n, (i) => datasetItem("train", 1, i));
rate("dataset item, val split", Math.ceil(n / 5), (i) => datasetItem("val", 1, i));
