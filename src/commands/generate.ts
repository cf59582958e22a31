import { mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { encodePng } from "../../pipelines/image.ts";
import { randomSeed } from "../../pipelines/random.ts";
import { loadLocalEngine } from "../client/local.ts";
import { ProgressView } from "../client/terminal.ts";
import { DEFAULTS } from "../defaults.ts";
import { invalid } from "../errors.ts";
import type { GenerateResult } from "../service/engine.ts";
import { GenerationRequest, parseInput } from "../service/schemas.ts";

export const usage = `atelier generate "request" -o out.png [--seed N] [--steps N] [--guidance G] [--sampler NAME]
                  [--rounds N] [--negative TEXT] [--plan] [--trace trace.json] [--models DIR]

Makes one image in this process (no server): the planner plans the request, the denoiser draws the plan,
and engines with a critic re-describe and revise it for up to --rounds rounds.
  -o, --out FILE     the PNG to write (required)
  --seed N           uint32 (default: random; printed, and recorded in the trace)
  --steps N          denoising steps, 1–100 (default ${DEFAULTS.steps})
  --guidance G       classifier-free guidance scale, 0–20 (default ${DEFAULTS.guidance})
  --sampler NAME     ddpm, ddim, euler, euler_ancestral, dpmpp_2m, lcm (default: the model's)
  --rounds N         most critique rounds, 1–8
  --negative TEXT    negative prompt
  --plan             the argument is a plan (<IMG_BEGIN> … <IMG_END>), not a request
  --trace FILE       write the trace (request, seed, plans, per-round settings, critiques, timings) as JSON,
                     with each round's image beside it (FILE-stem.round<R>.png)
  --models DIR       model folders ldm/, planner/, projection/ (default: $ATELIER_MODELS or models)
Progress goes to stderr (a bar on a terminal, one line per event when piped); the seed, the plan and the
written files go to stdout. Exit codes: 0 done, 1 failed, 2 bad usage.`;

/** A numeric flag as a number (what zod then checks, naming the flag); text stays text so zod names it. */
export const numeric = (value: string | undefined) =>
  value === undefined
    ? undefined
    : value.trim() !== "" && Number.isFinite(Number(value))
      ? Number(value)
      : value;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: "string", short: "o" },
      seed: { type: "string" },
      steps: { type: "string" },
      guidance: { type: "string" },
      sampler: { type: "string" },
      rounds: { type: "string" },
      negative: { type: "string" },
      plan: { type: "boolean" },
      trace: { type: "string" },
      models: { type: "string" },
    },
    strict: true,
  });
  if (positionals.length !== 1) throw invalid("prompt", "give exactly one request (quote it)");
  if (!values.out) throw invalid("out", "is required (-o out.png)");
  const request = parseInput(GenerationRequest, {
    [values.plan ? "plan" : "prompt"]: positionals[0],
    seed: numeric(values.seed) ?? randomSeed(),
    steps: numeric(values.steps),
    guidance: numeric(values.guidance),
    sampler: values.sampler,
    rounds: numeric(values.rounds),
    negative: values.negative,
  });
  const engine = await loadLocalEngine({ models: values.models });
  console.log(`seed ${request.seed}`);
  const progress = new ProgressView(process.stderr);
  const controller = new AbortController();
  const interrupt = () => controller.abort();
  process.once("SIGINT", interrupt);
  let result: GenerateResult;
  try {
    result = await engine.generate(request, {
      signal: controller.signal,
      onEvent: (event) => progress.show(event),
    });
  } catch (error) {
    if (!controller.signal.aborted) throw error;
    progress.clear();
    console.error("interrupted");
    return 130;
  } finally {
    progress.clear();
    process.off("SIGINT", interrupt);
    await engine.dispose();
  }
  const out = resolve(values.out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, encodePng(result.images[0]!));
  if (result.plans[0]) console.log(`plan ${result.plans[0]}`);
  console.log(`wrote ${out}`);
  if (values.trace)
    console.log(`wrote ${writeTrace(resolve(values.trace), request, engine.info.name, result)}`);
  return 0;
}

/** The trace as JSON, with the rounds' images as PNG files beside it. */
function writeTrace(
  path: string,
  request: GenerationRequest,
  engine: string,
  result: GenerateResult,
): string {
  mkdirSync(dirname(path), { recursive: true });
  const stem = basename(path).replace(/\.json$/i, "");
  const rounds = result.trace.map((round) => ({
    ...round,
    images: round.images.map((image, i) => {
      const name = `${stem}.round${round.round}${round.images.length > 1 ? `-${i}` : ""}.png`;
      writeFileSync(join(dirname(path), name), encodePng(image));
      return name;
    }),
  }));
  const trace = {
    engine,
    request,
    seed: request.seed,
    seeds: result.seeds,
    plans: result.plans,
    rounds,
    timings: result.timings,
  };
  writeFileSync(path, `${JSON.stringify(trace, null, 2)}\n`);
  return path;
}
