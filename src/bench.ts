/**
 * The latency profile of one single-pass generation, stage by stage (primer: LLM 5–20 %, projection < 1 %,
 * diffusion 80–90 %): planning, the plan span's hidden states, the projection (cache off), each denoising
 * step (denoiser calls vs the loop around them), the VAE decode. p50/p95 over N runs, each stage's share,
 * images per second, peak RSS and the ONNX Runtime settings. A benchmark, never a test: figures go to
 * BENCHMARKS.md with the machine and the date.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join } from "node:path";
import { encodePromptPair, loadDiffusionModel, txt2img } from "../pipelines/index.ts";
import { Planner } from "../planner/planner.ts";
import { loadProjection } from "../projection/projection.ts";
import { DEFAULTS } from "./defaults.ts";
import {
  countImageFlops,
  type EfficiencyReport,
  efficiencyReport,
  efficiencyText,
  measureMatmulPeak,
  theoreticalPeak,
} from "./efficiency.ts";
import { AtelierError } from "./errors.ts";

export interface BenchOptions {
  models: string;
  runs: number;
  steps: number;
  threads: number;
  prompt: string;
  /** Also run training/bench_torch.py (PyTorch eager, same weights, batch, steps and threads). */
  compareTorch?: boolean;
  /** Count FLOPs from the graphs and time a float32 matmul → percentage of peak (src/efficiency.ts). */
  efficiency?: boolean;
}

export interface TorchComparison {
  torch: string;
  /** p50 of one denoiser call at batch 2, ms: PyTorch eager and ONNX Runtime. */
  torchCallMs: number;
  ortCallMs: number;
  /** How many times faster ONNX Runtime is. */
  speedup: number;
}

export interface StageFigure {
  p50: number;
  p95: number;
  /** Share of the p50 total, percent. */
  share: number;
}

export interface BenchReport {
  machine: { cpu: string; cores: number; loadavg: number[]; node: string };
  settings: {
    runs: number;
    steps: number;
    guidance: number;
    sampler: string;
    threads: number;
    graphOptimizationLevel: string;
  };
  stages: Record<string, StageFigure>;
  /** ms, p50 of the whole single-pass generation. */
  total: StageFigure;
  imagesPerSecond: number;
  /** Time outside the denoiser calls and the VAE decode, percent of the txt2img part (issue 4: ≤ 5 %). */
  pipelineOverhead: number;
  /** Denoising (denoiser calls + loop) and VAE decode, percent of the total (primer: diffusion 80–90 %). */
  diffusionShare: number;
  peakRssMb: number;
  planTokens: number;
  compareTorch?: TorchComparison;
  efficiency?: EfficiencyReport;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const ldm = await loadDiffusionModel(join(options.models, "ldm"), { threads: options.threads });
  const planner = await Planner.load(join(options.models, "planner"));
  // Without projection layers (not yet trained for this denoiser) the plan goes through the model's own
  // text encoder, as the service does; the profile then has a text_encoder stage instead.
  const projectionDir = join(options.models, "projection");
  const projection = existsSync(projectionDir)
    ? await loadProjection(projectionDir, { planner, denoiser: ldm, cacheSize: 0 })
    : null;
  const samples: Record<string, number[]> = {
    planning: [],
    hidden_states: [],
    [projection ? "projection" : "text_encoder"]: [],
    denoiser_calls: [],
    denoise_loop: [],
    pipeline_setup: [],
    vae_decode: [],
    total: [],
  };
  let planTokens = 0;
  try {
    // One warm-up run (first ONNX runs allocate), then the measured runs.
    for (let run = -1; run < options.runs; run++) {
      const messages = [{ role: "user" as const, content: options.prompt }];
      const t0 = performance.now();
      const plan = await planner.plan(messages);
      const t1 = performance.now();
      const hidden = projection ? await planner.hiddenStates(messages, plan.text, projection.layers) : null;
      const t2 = performance.now();
      const conditioning = projection
        ? await projection.project(hidden!)
        : await encodePromptPair(ldm, plan.text);
      const t3 = performance.now();
      const result = await txt2img(ldm, conditioning, {
        steps: options.steps,
        guidance: DEFAULTS.guidance,
        seed: run + 1,
      });
      const t4 = performance.now();
      if (run < 0) continue;
      planTokens = plan.tokens;
      samples.planning!.push(t1 - t0);
      samples.hidden_states!.push(t2 - t1);
      samples[projection ? "projection" : "text_encoder"]!.push(t3 - t2);
      samples.denoiser_calls!.push(result.timings.unet);
      samples.denoise_loop!.push(result.timings.denoise - result.timings.unet);
      samples.pipeline_setup!.push(t4 - t3 - result.timings.denoise - result.timings.decode);
      samples.vae_decode!.push(result.timings.decode);
      samples.total!.push(t4 - t0);
    }
  } finally {
    await Promise.all([projection?.dispose(), planner.dispose(), ldm.dispose()]);
  }
  const p50 = (name: string) =>
    quantile(
      [...samples[name]!].sort((a, b) => a - b),
      0.5,
    );
  const p95 = (name: string) =>
    quantile(
      [...samples[name]!].sort((a, b) => a - b),
      0.95,
    );
  const total = p50("total");
  const figure = (name: string): StageFigure => ({
    p50: p50(name),
    p95: p95(name),
    share: (100 * p50(name)) / total,
  });
  const stages = Object.fromEntries(
    Object.keys(samples)
      .filter((name) => name !== "total")
      .map((name) => [name, figure(name)]),
  );
  const ortCallMs = p50("denoiser_calls") / options.steps;
  const compareTorch = options.compareTorch ? runTorch(options, ortCallMs) : undefined;
  const txt2imgTime = p50("denoiser_calls") + p50("denoise_loop") + p50("pipeline_setup") + p50("vae_decode");
  // After the timed runs: counting and the matmul timing must not overlap them (the model's geometry
  // stays readable after dispose).
  const conditioningStage = projection ? "projection" : "text_encoder";
  const efficiency = options.efficiency
    ? efficiencyReport(
        await countImageFlops(ldm, {
          steps: options.steps,
          guided: DEFAULTS.guidance > 1,
          projection: projection ? { dir: projectionDir, planTokens } : undefined,
        }),
        {
          conditioning: p50(conditioningStage),
          denoiser: p50("denoiser_calls"),
          decode: p50("vae_decode"),
          image: p50(conditioningStage) + txt2imgTime,
        },
        await measureMatmulPeak({ threads: options.threads }),
        theoreticalPeak(),
      )
    : undefined;
  return {
    machine: {
      cpu: cpus()[0]?.model ?? "unknown",
      cores: availableParallelism(),
      loadavg: loadavg(),
      node: process.version,
    },
    settings: {
      runs: options.runs,
      steps: options.steps,
      guidance: DEFAULTS.guidance,
      sampler: ldm.defaultScheduler,
      threads: options.threads,
      graphOptimizationLevel: "all",
    },
    stages,
    total: figure("total"),
    imagesPerSecond: 1000 / total,
    pipelineOverhead: (100 * (p50("denoise_loop") + p50("pipeline_setup"))) / txt2imgTime,
    diffusionShare: (100 * txt2imgTime) / total,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    planTokens,
    compareTorch,
    efficiency,
  };
}

function runTorch(options: BenchOptions, ortCallMs: number): TorchComparison {
  const python = process.env.ATELIER_PYTHON ?? "/usr/bin/python3";
  const script = new URL("../training/bench_torch.py", import.meta.url).pathname;
  const args = [script, "--ldm", join(options.models, "ldm"), "--steps", String(options.steps)];
  args.push(
    "--runs",
    String(Math.max(3, Math.floor(options.runs / 2))),
    "--threads",
    String(options.threads),
    "--json",
  );
  const run = spawnSync(python, args, {
    encoding: "utf8",
    cwd: new URL("../training/", import.meta.url).pathname,
  });
  if (run.status !== 0) {
    throw new AtelierError(`training/bench_torch.py failed: ${run.stderr || run.error?.message}`, {
      status: 500,
      code: "bench_torch_failed",
    });
  }
  const result = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as { torch: string; call_ms_p50: number };
  return {
    torch: result.torch,
    torchCallMs: result.call_ms_p50,
    ortCallMs,
    speedup: result.call_ms_p50 / ortCallMs,
  };
}

export function benchText(report: BenchReport): string {
  const ms = (value: number) => `${value.toFixed(2).padStart(9)} ms`;
  const lines = [
    `machine: ${report.machine.cpu}, ${report.machine.cores} cores, load ${report.machine.loadavg.map((l) => l.toFixed(2)).join(" ")}, node ${report.machine.node}`,
    `settings: ${report.settings.steps} steps, guidance ${report.settings.guidance}, ${report.settings.sampler}, ` +
      `${report.settings.threads} ORT threads, graph optimisation ${report.settings.graphOptimizationLevel}, ${report.settings.runs} runs`,
    `stage              p50          p95       share`,
  ];
  for (const [name, f] of Object.entries(report.stages)) {
    lines.push(`${name.padEnd(15)} ${ms(f.p50)} ${ms(f.p95)} ${f.share.toFixed(2).padStart(7)} %`);
  }
  lines.push(`${"total".padEnd(15)} ${ms(report.total.p50)} ${ms(report.total.p95)}`);
  lines.push(
    `plan span ${report.planTokens} tokens; ${report.imagesPerSecond.toFixed(2)} images/s single pass`,
  );
  lines.push(`diffusion (denoising + decode) ${report.diffusionShare.toFixed(1)} % of the total`);
  lines.push(
    `pipeline overhead outside the denoiser and VAE: ${report.pipelineOverhead.toFixed(2)} % of txt2img`,
  );
  lines.push(`peak RSS ${report.peakRssMb.toFixed(0)} MB`);
  const torch = report.compareTorch;
  if (torch) {
    lines.push(
      `denoiser call, batch 2: ONNX Runtime ${torch.ortCallMs.toFixed(2)} ms vs PyTorch ${torch.torch} eager ` +
        `${torch.torchCallMs.toFixed(2)} ms → ONNX Runtime ${torch.speedup.toFixed(2)}× faster`,
    );
  }
  if (report.efficiency) lines.push(efficiencyText(report.efficiency));
  return lines.join("\n");
}
