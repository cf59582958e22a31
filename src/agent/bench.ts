/**
 * The latency of the critique loop (issue 8: the full loop with up to 3 rounds, p50 ≤ 1.5 s on 2 cores):
 * N generations through the AgentEngine, p50/p95 of every node call (plan, condition, sample, describe,
 * critique, revise), of the whole loop, and of the graph's own overhead (the loop minus its nodes). A
 * benchmark, never a test: figures go to BENCHMARKS.md with the machine and the date.
 */
import { existsSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { DEFAULTS } from "../defaults.ts";
import { AgentEngine } from "./engine.ts";
import { NODES } from "./loop.ts";

export interface AgentBenchOptions {
  /** Models root: ldm/, planner/, describer/ and, if present, projection/. */
  models: string;
  runs: number;
  steps: number;
  threads: number;
  prompt: string;
  /** Most rounds per generation (default 3). */
  rounds?: number;
}

export interface Figure {
  p50: number;
  p95: number;
  /** Samples behind the figure (node calls, or runs). */
  n: number;
}

export interface AgentBenchReport {
  machine: { cpu: string; cores: number; loadavg: number[]; node: string };
  settings: {
    runs: number;
    rounds: number;
    steps: number;
    guidance: number;
    sampler: string;
    threads: number;
  };
  engine: string;
  /** ms per call of each node. */
  nodes: Record<string, Figure>;
  /** ms of one whole generation (all its rounds). */
  loop: Figure;
  /** ms of the loop outside its nodes (graph steps, checkpoints, choosing the best round). */
  overhead: Figure;
  /** Mean rounds a generation ran (fewer than `rounds` when a round reached agreement 1). */
  meanRounds: number;
}

function figure(samples: number[]): Figure {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { p50: at(0.5), p95: at(0.95), n: sorted.length };
}

export async function runAgentBench(options: AgentBenchOptions): Promise<AgentBenchReport> {
  const rounds = options.rounds ?? 3;
  const projection = join(options.models, "projection");
  const engine = await AgentEngine.load({
    ldm: join(options.models, "ldm"),
    planner: join(options.models, "planner"),
    projection: existsSync(projection) ? projection : null,
    describer: join(options.models, "describer"),
    threads: options.threads,
  });
  const nodes: Record<string, number[]> = Object.fromEntries(NODES.map((n) => [n, []]));
  const loop: number[] = [];
  const overhead: number[] = [];
  let roundsRun = 0;
  try {
    // One warm-up run (first ONNX runs allocate), then the measured runs.
    for (let run = -1; run < options.runs; run++) {
      const result = await engine.generate(
        {
          prompt: options.prompt,
          seed: run + 1,
          steps: options.steps,
          guidance: DEFAULTS.guidance,
          rounds,
        },
        { onEvent: () => {}, signal: new AbortController().signal },
      );
      if (run < 0) continue;
      let inNodes = 0;
      for (const round of result.trace)
        for (const node of NODES) {
          const ms = round.timings[node];
          if (ms === undefined) continue;
          nodes[node]!.push(ms);
          inNodes += ms;
        }
      loop.push(result.timings.total!);
      overhead.push(result.timings.total! - inNodes);
      roundsRun += result.trace.length;
    }
  } finally {
    await engine.dispose();
  }
  return {
    machine: {
      cpu: cpus()[0]?.model ?? "unknown",
      cores: cpus().length,
      loadavg: loadavg(),
      node: process.version,
    },
    settings: {
      runs: options.runs,
      rounds,
      steps: options.steps,
      guidance: DEFAULTS.guidance,
      sampler: engine.info.defaultSampler,
      threads: options.threads,
    },
    engine: engine.info.name,
    nodes: Object.fromEntries(Object.entries(nodes).map(([n, s]) => [n, figure(s)])),
    loop: figure(loop),
    overhead: figure(overhead),
    meanRounds: roundsRun / options.runs,
  };
}

export function agentBenchText(report: AgentBenchReport): string {
  const ms = (value: number) => `${value.toFixed(2).padStart(9)} ms`;
  const s = report.settings;
  const lines = [
    `machine: ${report.machine.cpu}, ${report.machine.cores} cores, load ${report.machine.loadavg.map((l) => l.toFixed(2)).join(" ")}, node ${report.machine.node}`,
    `engine ${report.engine}: up to ${s.rounds} rounds, ${s.steps} steps, guidance ${s.guidance}, ${s.sampler}, ${s.threads} ORT threads, ${s.runs} runs`,
    "node                p50          p95    calls",
  ];
  for (const [name, f] of Object.entries(report.nodes))
    lines.push(`${name.padEnd(12)} ${ms(f.p50)} ${ms(f.p95)} ${String(f.n).padStart(8)}`);
  lines.push(`${"graph".padEnd(12)} ${ms(report.overhead.p50)} ${ms(report.overhead.p95)}`);
  lines.push(
    `${"whole loop".padEnd(12)} ${ms(report.loop.p50)} ${ms(report.loop.p95)} ${String(report.loop.n).padStart(8)}`,
  );
  lines.push(`mean rounds per generation ${report.meanRounds.toFixed(2)}`);
  return lines.join("\n");
}
