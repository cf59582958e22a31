/**
 * Compute efficiency of a generation: floating-point operations per image, counted from the exported ONNX
 * graphs at the shapes the pipeline runs them with, against the machine's measured single-precision
 * matrix-multiply throughput in ONNX Runtime itself → percentage of peak, per stage and per image.
 *
 * Counting: each graph runs once under ONNX Runtime's profiler with graph optimisations off, so the profile
 * lists every node of the export exactly as written, with the shapes it actually ran at (symbolic dims,
 * Reshapes and broadcasting resolved by the runtime, not re-derived here). FLOPs are 2 × the multiply-adds of
 * Conv, ConvTranspose, MatMul and Gemm (the convention of published FLOP counts); element-wise ops,
 * normalisations and softmax are not counted, and compute-heavy ops the count cannot size (Einsum, contrib
 * attention, quantised kernels) are listed as uncounted rather than guessed.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import type { DiffusionModel } from "../pipelines/model-folder.ts";
import { buildModel, DT } from "../pipelines/onnx-builder.ts";
import { AtelierError, invalid } from "./errors.ts";

type Shape = readonly number[];

const size = (shape: Shape) => shape.reduce((a, b) => a * b, 1);

const COUNTED = new Set(["Conv", "ConvTranspose", "MatMul", "Gemm"]);

/**
 * FLOPs of one node from the shapes it ran at; null when the op is not a counted kind or the profile lacks a
 * shape it needs. MatMul and Gemm are sized from A and Y alone: the runtime pre-packs constant B weights and
 * the profile then omits B's shape.
 */
export function nodeFlops(op: string, inputs: Shape[], outputs: Shape[]): number | null {
  const [a, b] = inputs;
  const y = outputs[0];
  if (!a || !y) return null;
  switch (op) {
    // W is [Cout, Cin/group, k…]: every output element takes Cin/group · ∏k multiply-adds.
    case "Conv":
      return b ? 2 * size(y) * size(b.slice(1)) : null;
    // W is [Cin, Cout/group, k…]: every input element scatters into Cout/group · ∏k outputs.
    case "ConvTranspose":
      return b ? 2 * size(a) * size(b.slice(1)) : null;
    // [..., M, K] × [..., K, N] (batch dims broadcast) → [..., M, N]; a 1-D A is [K].
    case "MatMul":
      return 2 * size(y) * a[a.length - 1]!;
    // Y is [M, N]; A holds M·K values whether or not it is transposed.
    case "Gemm":
      return 2 * size(y) * (size(a) / y[0]!);
    default:
      return null;
  }
}

/** Ops whose cost is dominated by multiply-adds but that the count cannot size from shapes alone. */
const UNSIZED = new Set([
  "Einsum",
  "Attention",
  "MultiHeadAttention",
  "GroupQueryAttention",
  "FusedConv",
  "FusedGemm",
  "FusedMatMul",
  "NhwcConv",
  "ConvInteger",
  "MatMulInteger",
  "QLinearConv",
  "QLinearMatMul",
  "DynamicQuantizeMatMul",
  "MatMulNBits",
  "QAttention",
  "LSTM",
  "GRU",
  "RNN",
]);

export interface GraphFlops {
  flops: number;
  /** Counted op types: node runs and their FLOPs. */
  byOp: Record<string, { nodes: number; flops: number }>;
  /** Node runs of compute-heavy ops left out of `flops` (UNSIZED, or a counted op missing a shape), by op. */
  uncounted: Record<string, number>;
  /** All node runs in the profile. */
  nodes: number;
}

export interface InputMeta {
  name: string;
  type: string;
  shape: readonly (number | string)[];
}

interface ProfileEvent {
  cat?: string;
  name?: string;
  args?: {
    op_name?: string;
    input_type_shape?: Record<string, number[]>[];
    output_type_shape?: Record<string, number[]>[];
  };
}

const shapes = (list: Record<string, number[]>[] | undefined): Shape[] =>
  (list ?? []).map((entry) => Object.values(entry)[0] ?? []);

/** Sums the counted FLOPs of one run's ONNX Runtime profile (the JSON trace events). */
export function flopsFromProfile(events: ProfileEvent[]): GraphFlops {
  const result: GraphFlops = { flops: 0, byOp: {}, uncounted: {}, nodes: 0 };
  for (const event of events) {
    const op = event.args?.op_name;
    if (event.cat !== "Node" || !op || !event.name?.endsWith("_kernel_time")) continue;
    result.nodes++;
    const flops = nodeFlops(op, shapes(event.args!.input_type_shape), shapes(event.args!.output_type_shape));
    if (flops !== null) {
      result.byOp[op] ??= { nodes: 0, flops: 0 };
      const entry = result.byOp[op];
      entry.nodes++;
      entry.flops += flops;
      result.flops += flops;
    } else if (COUNTED.has(op) || UNSIZED.has(op)) {
      result.uncounted[op] = (result.uncounted[op] ?? 0) + 1;
    }
  }
  return result;
}

export type Feeds = Record<string, ort.Tensor>;

/**
 * Runs a graph once under the profiler and counts its FLOPs. `feeds` may be a function of the graph's
 * declared inputs, so callers can size tensors from the metadata. Returns the output dims as well.
 */
export async function countGraphFlops(
  model: string | Uint8Array,
  feeds: Feeds | ((inputs: InputMeta[]) => Feeds),
): Promise<{ flops: GraphFlops; outputs: Record<string, readonly number[]> }> {
  const dir = mkdtempSync(join(tmpdir(), "atelier-flops-"));
  try {
    const options: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: 1,
      graphOptimizationLevel: "disabled",
      enableProfiling: true,
      profileFilePrefix: join(dir, "profile"),
    };
    const session =
      typeof model === "string"
        ? await ort.InferenceSession.create(model, options)
        : await ort.InferenceSession.create(model, options);
    let outputs: Record<string, readonly number[]>;
    try {
      const inputs = session.inputMetadata.map((m) => ({
        name: m.name,
        type: m.isTensor ? m.type : "non-tensor",
        shape: m.isTensor ? m.shape : [],
      }));
      const result = await session.run(typeof feeds === "function" ? feeds(inputs) : feeds);
      outputs = Object.fromEntries(Object.entries(result).map(([name, t]) => [name, t.dims]));
      session.endProfiling();
    } finally {
      await session.release();
    }
    const file = readdirSync(dir).find((f) => f.endsWith(".json"));
    if (!file)
      throw new AtelierError("ONNX Runtime wrote no profile", { status: 500, code: "profile_missing" });
    return { flops: flopsFromProfile(JSON.parse(readFileSync(join(dir, file), "utf8"))), outputs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A zero tensor of the declared element type (FLOPs depend on shapes, not values). */
function zeros(type: string, dims: number[], name: string): ort.Tensor {
  const n = size(dims);
  switch (type) {
    case "float32":
      return new ort.Tensor("float32", new Float32Array(n), dims);
    case "float16":
      return new ort.Tensor("float16", new Uint16Array(n), dims);
    case "float64":
      return new ort.Tensor("float64", new Float64Array(n), dims);
    case "int64":
      return new ort.Tensor("int64", new BigInt64Array(n), dims);
    case "int32":
      return new ort.Tensor("int32", new Int32Array(n), dims);
    default:
      throw new AtelierError(`input ${name} has element type ${type}, which the FLOP counter cannot feed`, {
        status: 500,
        code: "model_invalid",
        param: name,
      });
  }
}

const fixed = (d: number | string | undefined): number | null => (typeof d === "number" && d > 0 ? d : null);

function requireInput(inputs: InputMeta[], names: string[], component: string): InputMeta {
  const found = inputs.find((m) => names.includes(m.name));
  if (!found)
    throw new AtelierError(`${component}/model.onnx has no input ${names.join(" or ")}`, {
      status: 500,
      code: "model_invalid",
      param: component,
    });
  return found;
}

export interface ImageFlopsOptions {
  /** Denoiser calls per image (one per step for the implemented schedulers). */
  steps: number;
  /** Classifier-free guidance: the denoiser runs the (uncond, cond) pair, batch 2 (default true). */
  guided?: boolean;
  width?: number;
  height?: number;
  /**
   * The LLM path: conditioning comes from this projection folder, run once per plan on `planTokens` hidden
   * states. Without it the model's text encoder encodes (prompt, negative) in one batch, as encodePromptPair.
   */
  projection?: { dir: string; planTokens: number };
}

export interface ImageFlops {
  conditioning: GraphFlops & { component: "text_encoder" | "projection"; shape: number[] };
  /** One denoiser step (all chunks of a fixed-batch export), at the batch the pipeline uses. */
  denoiserStep: GraphFlops & { batch: number; callsPerStep: number; sample: number[] };
  steps: number;
  decode: GraphFlops & { latent: number[] };
  /** conditioning + steps × denoiserStep + decode. */
  perImage: number;
}

function scaled(g: GraphFlops, k: number): GraphFlops {
  return {
    flops: g.flops * k,
    byOp: Object.fromEntries(
      Object.entries(g.byOp).map(([op, e]) => [op, { nodes: e.nodes * k, flops: e.flops * k }]),
    ),
    uncounted: Object.fromEntries(Object.entries(g.uncounted).map(([op, n]) => [op, n * k])),
    nodes: g.nodes * k,
  };
}

/** Counts the FLOPs of one single-pass generation of a loaded diffusers-ONNX model, stage by stage. */
export async function countImageFlops(
  model: Pick<DiffusionModel, "dir" | "latentChannels" | "vaeScaleFactor" | "width" | "height">,
  options: ImageFlopsOptions,
): Promise<ImageFlops> {
  if (!Number.isInteger(options.steps) || options.steps < 1)
    throw invalid("steps", `must be a positive integer, got ${options.steps}`);
  const guided = options.guided ?? true;
  const batch = guided ? 2 : 1;
  const width = options.width ?? model.width;
  const height = options.height ?? model.height;
  const h = height / model.vaeScaleFactor;
  const w = width / model.vaeScaleFactor;
  if (!Number.isInteger(h) || !Number.isInteger(w))
    throw invalid("size", `${width}×${height} is not a multiple of the VAE factor ${model.vaeScaleFactor}`);
  const component = (name: string) => join(model.dir, name, "model.onnx");

  // Conditioning: its output fixes the sequence and widths the denoiser is fed with.
  let conditioning: ImageFlops["conditioning"];
  let states: readonly number[];
  let pooled: readonly number[] | undefined;
  if (options.projection) {
    const manifest = JSON.parse(readFileSync(join(options.projection.dir, "projection.json"), "utf8")) as {
      k: number;
      d_llm: number;
    };
    const shape = [manifest.k, options.projection.planTokens, manifest.d_llm];
    const run = await countGraphFlops(join(options.projection.dir, "model.onnx"), (inputs) => {
      const input = requireInput(inputs, ["hidden_states"], "projection");
      const feeds = { [input.name]: zeros(input.type, shape, input.name) };
      // A projection with object slots also reads which object each plan token describes (the op counts
      // do not depend on the values).
      const slots = inputs.find((i) => i.name === "slot_ids");
      if (slots) feeds.slot_ids = zeros(slots.type, [options.projection!.planTokens], slots.name);
      return feeds;
    });
    conditioning = { ...run.flops, component: "projection", shape };
    states = run.outputs.encoder_hidden_states!;
    pooled = run.outputs.text_embeds;
  } else {
    let shape: number[] = [];
    const run = await countGraphFlops(component("text_encoder"), (inputs) => {
      const ids = requireInput(inputs, ["input_ids"], "text_encoder");
      const tokenizerConfig = join(model.dir, "tokenizer", "tokenizer_config.json");
      const maxLength = existsSync(tokenizerConfig)
        ? (JSON.parse(readFileSync(tokenizerConfig, "utf8")) as { model_max_length?: number })
            .model_max_length
        : undefined;
      // The length encodeText pads to: the graph's fixed length, else the tokenizer's, else CLIP's 77.
      const length = fixed(ids.shape[1]) ?? (maxLength && maxLength < 100_000 ? maxLength : 77);
      shape = [batch, length];
      return { [ids.name]: zeros(ids.type, shape, ids.name) };
    });
    conditioning = { ...run.flops, component: "text_encoder", shape };
    states = run.outputs.last_hidden_state ?? Object.values(run.outputs)[0]!;
    pooled = run.outputs.pooler_output ?? run.outputs.text_embeds;
  }

  let chunk = batch;
  let sample: number[] = [];
  const unet = await countGraphFlops(component("unet"), (inputs) => {
    const sampleIn = requireInput(inputs, ["sample"], "unet");
    chunk = fixed(sampleIn.shape[0]) ?? batch;
    if (batch % chunk !== 0)
      throw invalid("batch", `the denoiser export has a fixed batch of ${chunk}; ${batch} does not divide`);
    sample = [chunk, model.latentChannels, h, w];
    const feeds: Feeds = {};
    for (const input of inputs) {
      let dims: number[];
      if (input.name === "sample") dims = sample;
      else if (["timestep", "timesteps", "t"].includes(input.name))
        dims = input.shape.length === 0 ? [] : [fixed(input.shape[0]) === 1 ? 1 : chunk];
      else if (input.name === "encoder_hidden_states") dims = [chunk, states[1]!, states[2]!];
      else if (input.name === "text_embeds" && pooled) dims = [chunk, pooled[pooled.length - 1]!];
      else if (input.name === "time_ids") dims = [chunk, 6];
      else
        throw new AtelierError(`unet/model.onnx input ${input.name} is not one the pipeline feeds`, {
          status: 500,
          code: "model_invalid",
          param: input.name,
        });
      feeds[input.name] = zeros(input.type, dims, input.name);
    }
    return feeds;
  });
  const callsPerStep = batch / chunk;

  const latent = [1, model.latentChannels, h, w];
  const vae = await countGraphFlops(component("vae_decoder"), (inputs) => ({
    [inputs[0]!.name]: zeros(inputs[0]!.type, latent, inputs[0]!.name),
  }));

  const denoiserStep = { ...scaled(unet.flops, callsPerStep), batch, callsPerStep, sample };
  return {
    conditioning,
    denoiserStep,
    steps: options.steps,
    decode: { ...vae.flops, latent },
    perImage: conditioning.flops + options.steps * denoiserStep.flops + vae.flops.flops,
  };
}

// ---------------------------------------------------------------------------------------------
// Peak: a large single-precision MatMul in ONNX Runtime, with the bench's session settings.

/** ModelProto of Y = A·B, all float32 [n × n]. */
export function matmulModel(n: number): Uint8Array {
  const square = (name: string) => ({ name, type: DT.float, shape: [n, n] });
  return buildModel(
    {
      nodes: [{ op: "MatMul", inputs: ["A", "B"], outputs: ["Y"] }],
      inputs: [square("A"), square("B")],
      outputs: [square("Y")],
    },
    "matmul",
  );
}

export interface MatmulTiming {
  n: number;
  bestMs: number;
  medianMs: number;
  /** 2n³ / best time. */
  gflops: number;
}

export interface MatmulPeak {
  threads: number;
  runs: number;
  /** The best GFLOP/s over the sizes: the peak the percentages refer to. */
  gflops: number;
  sizes: MatmulTiming[];
}

async function timeMatmul(n: number, threads: number, runs: number): Promise<MatmulTiming> {
  const session = await ort.InferenceSession.create(matmulModel(n), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
  });
  try {
    // Values in [−1, 1) from a fixed LCG: no denormals, no zeros the kernel could shortcut.
    let state = 12345;
    const values = () =>
      Float32Array.from({ length: n * n }, () => {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        return state / 2 ** 31 - 1;
      });
    const feeds = {
      A: new ort.Tensor("float32", values(), [n, n]),
      B: new ort.Tensor("float32", values(), [n, n]),
    };
    for (let i = 0; i < 2; i++) await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      await session.run(feeds);
      times.push(performance.now() - start);
    }
    times.sort((x, y) => x - y);
    const bestMs = times[0]!;
    return { n, bestMs, medianMs: times[Math.floor(runs / 2)]!, gflops: (2 * n ** 3) / (bestMs * 1e6) };
  } finally {
    await session.release();
  }
}

/**
 * Times n×n×n float32 MatMuls (warm-up, then best of `runs` per size) with the pipeline's session settings.
 * Several sizes, because on a shared machine a run longer than the scheduler's time slice is always cut
 * into by other processes: the 512 case (a few ms) can run whole, the 1024 case shows the larger-matrix rate.
 */
export async function measureMatmulPeak(
  options: { sizes?: number[]; threads?: number; runs?: number } = {},
): Promise<MatmulPeak> {
  const threads = options.threads ?? availableParallelism();
  const runs = options.runs ?? 20;
  const sizes: MatmulTiming[] = [];
  for (const n of options.sizes ?? [512, 1024]) sizes.push(await timeMatmul(n, threads, runs));
  return { threads, runs, gflops: Math.max(...sizes.map((t) => t.gflops)), sizes };
}

export interface TheoreticalPeak {
  /** Physical cores of the machine (lscpu), else logical CPUs. */
  cores: number;
  /** The widest single-precision SIMD the CPU flags advertise. */
  simd: "avx512" | "avx2+fma" | "avx" | "sse" | "unknown";
  /** Highest core clock the OS reports, MHz; null when it reports none. */
  maxClockMhz: number | null;
  /** cores × clock × FLOPs per cycle, when the clock is readable; otherwise null (see note). */
  gflops: number | null;
  note: string;
}

/**
 * The theoretical single-precision peak, only from what the OS states: the SIMD flags and the maximum clock
 * (cpufreq or lscpu). FLOPs per cycle assume two FMA pipes of the SIMD width (AMD before Zen 5 runs
 * AVX-512 on 256-bit pipes). Without a readable maximum clock no peak is given: the clock in /proc/cpuinfo
 * under a hypervisor is the TSC rate, not the core's boost clock.
 */
export function theoreticalPeak(): TheoreticalPeak {
  let flags = "";
  let amdBeforeZen5 = false;
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    flags = info.match(/^flags\s*:(.*)$/m)?.[1] ?? "";
    amdBeforeZen5 =
      /^vendor_id\s*:\s*AuthenticAMD/m.test(info) && Number(info.match(/^cpu family\s*:\s*(\d+)/m)?.[1]) < 26;
  } catch {
    // Not Linux: the flags stay unknown.
  }
  const has = (flag: string) => new RegExp(`\\b${flag}\\b`).test(flags);
  const simd = has("avx512f")
    ? "avx512"
    : has("avx2") && has("fma")
      ? "avx2+fma"
      : has("avx")
        ? "avx"
        : has("sse")
          ? "sse"
          : "unknown";
  let maxClockMhz: number | null = null;
  // Physical cores: SMT siblings share the FMA pipes.
  let cores = availableParallelism();
  const cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
  if (existsSync(cpufreq)) maxClockMhz = Number(readFileSync(cpufreq, "utf8").trim()) / 1000 || null;
  try {
    const lscpu = execFileSync("lscpu", { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    maxClockMhz ??= Number(lscpu.match(/^CPU max MHz:\s*([\d.]+)/m)?.[1]) || null;
    const perSocket = Number(lscpu.match(/^Core\(s\) per socket:\s*(\d+)/m)?.[1]);
    const sockets = Number(lscpu.match(/^Socket\(s\):\s*(\d+)/m)?.[1]);
    if (perSocket > 0 && sockets > 0) cores = perSocket * sockets;
  } catch {
    // No lscpu: logical CPUs stand in for cores, and the clock is known only from cpufreq.
  }
  const lanes =
    simd === "avx512" && !amdBeforeZen5 ? 16 : simd === "avx2+fma" || simd === "avx512" ? 8 : null;
  const perCycle = lanes === null ? null : 2 * 2 * lanes;
  const gflops = maxClockMhz !== null && perCycle !== null ? (cores * maxClockMhz * perCycle) / 1000 : null;
  const model = cpus()[0]?.model ?? "unknown CPU";
  const note =
    gflops !== null
      ? `${model}: ${cores} cores × ${maxClockMhz} MHz × ${perCycle} FLOP/cycle (2 FMA pipes × ${lanes} lanes assumed)`
      : `${model}: no theoretical peak, the OS reports no maximum core clock (no cpufreq, no "CPU max MHz" in lscpu)`;
  return { cores, simd, maxClockMhz, gflops, note };
}

// ---------------------------------------------------------------------------------------------
// FLOPs against time: achieved throughput and the share of the measured matmul peak.

/** p50 milliseconds of the stages whose FLOPs are counted (from the bench's profile). */
export interface StageMs {
  conditioning: number;
  /** All denoiser calls of one image. */
  denoiser: number;
  decode: number;
  /** The counted part of one image end to end: conditioning + txt2img (the loop and setup included). */
  image: number;
}

export interface StageEfficiency {
  gflop: number;
  ms: number;
  /** Achieved GFLOP/s. */
  gflops: number;
  /** Percent of the measured matmul GFLOP/s. */
  percentOfPeak: number;
  /** Percent of the theoretical peak, when there is one. */
  percentOfTheoretical: number | null;
}

export interface EfficiencyReport {
  flops: {
    conditioning: number;
    component: "text_encoder" | "projection";
    denoiserStep: number;
    denoiserBatch: number;
    steps: number;
    decode: number;
    perImage: number;
    uncounted: Record<string, number>;
  };
  peak: MatmulPeak;
  theoretical: TheoreticalPeak;
  stages: Record<"conditioning" | "denoiser" | "decode" | "image", StageEfficiency>;
}

export function efficiencyReport(
  flops: ImageFlops,
  ms: StageMs,
  peak: MatmulPeak,
  theoretical: TheoreticalPeak,
): EfficiencyReport {
  const stage = (count: number, time: number): StageEfficiency => {
    const gflops = count / 1e9 / (time / 1000);
    return {
      gflop: count / 1e9,
      ms: time,
      gflops,
      percentOfPeak: (100 * gflops) / peak.gflops,
      percentOfTheoretical: theoretical.gflops === null ? null : (100 * gflops) / theoretical.gflops,
    };
  };
  const uncounted: Record<string, number> = {};
  for (const g of [flops.conditioning, flops.denoiserStep, flops.decode])
    for (const [op, n] of Object.entries(g.uncounted)) uncounted[op] = (uncounted[op] ?? 0) + n;
  return {
    flops: {
      conditioning: flops.conditioning.flops,
      component: flops.conditioning.component,
      denoiserStep: flops.denoiserStep.flops,
      denoiserBatch: flops.denoiserStep.batch,
      steps: flops.steps,
      decode: flops.decode.flops,
      perImage: flops.perImage,
      uncounted,
    },
    peak,
    theoretical,
    stages: {
      conditioning: stage(flops.conditioning.flops, ms.conditioning),
      denoiser: stage(flops.steps * flops.denoiserStep.flops, ms.denoiser),
      decode: stage(flops.decode.flops, ms.decode),
      image: stage(flops.perImage, ms.image),
    },
  };
}

export function efficiencyText(report: EfficiencyReport): string {
  const { flops, peak, theoretical } = report;
  const mflop = (v: number) => `${(v / 1e6).toFixed(1)} MFLOP`;
  const lines = [
    `FLOPs (2 × multiply-adds of Conv/ConvTranspose/MatMul/Gemm, counted from the graphs): ` +
      `${flops.component} ${mflop(flops.conditioning)}, denoiser ${mflop(flops.denoiserStep)} per step ` +
      `(batch ${flops.denoiserBatch}) × ${flops.steps}, VAE decode ${mflop(flops.decode)} → ${mflop(flops.perImage)} per image`,
    `matmul peak (float32 in ONNX Runtime, ${peak.threads} threads, best of ${peak.runs}): ${peak.gflops.toFixed(1)} GFLOP/s (` +
      peak.sizes
        .map((t) => `n=${t.n} ${t.gflops.toFixed(1)}, median ${t.medianMs.toFixed(2)} ms`)
        .join("; ") +
      ")",
    `theoretical: ${theoretical.gflops === null ? "n/a" : `${theoretical.gflops.toFixed(0)} GFLOP/s`} (${theoretical.simd}; ${theoretical.note})`,
    `stage              GFLOP        ms    GFLOP/s   % of matmul peak`,
  ];
  for (const [name, s] of Object.entries(report.stages))
    lines.push(
      `${name.padEnd(14)} ${s.gflop.toFixed(4).padStart(8)} ${s.ms.toFixed(2).padStart(9)} ${s.gflops.toFixed(2).padStart(10)} ${s.percentOfPeak.toFixed(1).padStart(10)} %`,
    );
  const uncounted = Object.entries(flops.uncounted);
  if (uncounted.length > 0)
    lines.push(`not counted (no FLOP rule): ${uncounted.map(([op, n]) => `${op} ×${n}`).join(", ")}`);
  return lines.join("\n");
}
