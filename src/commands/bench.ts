import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { agentBenchText, runAgentBench } from "../agent/bench.ts";
import { benchText, runBench } from "../bench.ts";
import { DEFAULTS } from "../defaults.ts";
import { invalid } from "../errors.ts";
import { loadText, runLoad } from "../load.ts";

export const usage = `atelier bench [--runs 20] [--steps ${DEFAULTS.steps}] [--threads N] [--models models] [--prompt "…"] [--json] [--compare-torch] [--efficiency]

Profiles single-pass generations stage by stage (planning, hidden states, projection, denoiser calls, the
loop around them, pipeline setup, VAE decode): p50/p95 over --runs, each stage's share, images/s, peak RSS
and the ONNX Runtime settings. --threads: intra-op threads of the diffusion sessions (default: all cores).
--compare-torch also runs training/bench_torch.py (PyTorch eager on the same U-Net weights, batch 2, steps and
threads; needs /usr/bin/python3 with torch, or $ATELIER_PYTHON) and prints how many times faster ONNX Runtime is.
--efficiency counts FLOPs per image from the ONNX graphs (2 × multiply-adds of Conv/ConvTranspose/MatMul/Gemm at
the shapes they run at), times a float32 matmul in ONNX Runtime with the same threads, and prints the achieved
GFLOP/s and percentage of that peak per stage and per image.

atelier bench --agent [--runs 20] [--steps ${DEFAULTS.steps}] [--threads N] [--models models] [--prompt "…"] [--json]
  The critique loop (up to 3 rounds; needs ldm/, planner/ and describer/ under --models): p50/p95 per node
  call (plan, condition, sample, describe, critique, revise), of the graph's own overhead and the whole loop.

atelier bench --load http://127.0.0.1:8787 [--requests 100] [--concurrency 16] [--seconds 120] [--json]
  Loopback load generator against POST /v1/images/generations of a running server ($ATELIER_API_KEY as
  bearer token): throughput, p50/p95 latency, share of 429 answers, errors and lost requests (exit 1 if any).`;

function positive(field: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw invalid(field, `must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string" },
      steps: { type: "string" },
      threads: { type: "string" },
      models: { type: "string" },
      prompt: { type: "string" },
      json: { type: "boolean" },
      "compare-torch": { type: "boolean" },
      efficiency: { type: "boolean" },
      agent: { type: "boolean" },
      load: { type: "string" },
      requests: { type: "string" },
      concurrency: { type: "string" },
      seconds: { type: "string" },
    },
    strict: true,
  });
  if (values.load) {
    const load = await runLoad({
      url: values.load,
      requests: positive("requests", values.requests, 100),
      concurrency: positive("concurrency", values.concurrency, 16),
      seconds: positive("seconds", values.seconds, 120),
      apiKey: process.env.ATELIER_API_KEY,
      prompt: values.prompt ?? "a red star at the top left",
    });
    console.log(values.json ? JSON.stringify(load, null, 2) : loadText(load));
    return load.errors === 0 && load.lost === 0 ? 0 : 1;
  }
  // What the single-pass and the agent benches share.
  const common = {
    models: resolve(values.models ?? process.env.ATELIER_MODELS ?? "models"),
    runs: positive("runs", values.runs, 20),
    steps: positive("steps", values.steps, DEFAULTS.steps),
    threads: positive("threads", values.threads, availableParallelism()),
    prompt: values.prompt ?? "three yellow stars above a blue square on a black background",
  };
  if (values.agent) {
    const agent = await runAgentBench(common);
    console.log(values.json ? JSON.stringify(agent, null, 2) : agentBenchText(agent));
    return 0;
  }
  const report = await runBench({
    ...common,
    compareTorch: values["compare-torch"] ?? false,
    efficiency: values.efficiency ?? false,
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : benchText(report));
  return 0;
}
