import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { invalid } from "../errors.ts";

const TRAINING = join(dirname(fileURLToPath(import.meta.url)), "../../training");
const STAGES = ["vae", "ldm", "export", "text_encoder", "planner", "projection", "describer"] as const;

export const usage = `atelier train <stage> [options passed to training/<stage>.py]

Stages (PyTorch, run with $ATELIER_PYTHON or /usr/bin/python3):
  vae      KL-VAE 64×64×3 ↔ 8×8×4       atelier train vae --data data/train --val data/val
  ldm      text encoder + U-Net denoiser  atelier train ldm --data data/train --val data/val
  export   diffusers ONNX layout          atelier train export --dest models/ldm --fp16
  text_encoder  the export's text encoder tuned alone on requests and edits (training/text-set.ts's data)
                                          atelier train text_encoder --model models/ldm --data data/text-train
                                            --val data/text-val, then --export
  planner  Llama planner LLM              atelier train planner train --corpus data/chat/train.jsonl
                                          atelier train planner export --out models/planner
  projection  plan states → conditioning  atelier train projection train --planner models/planner --denoiser models/ldm
                                            --data data/projection/train --val data/projection/val
  describer   image → plan                atelier train describer train --data data/train --val data/val

Common options: --config tiny|default, --device cpu|cuda, --resume, --steps N, --out DIR.
\`/usr/bin/python3 training/<stage>.py --help\` lists a stage's options. The exit code is the script's.`;

export async function run(argv: string[]): Promise<number> {
  const [stage, ...rest] = argv;
  if (!stage || !(STAGES as readonly string[]).includes(stage)) {
    throw invalid("stage", `expected one of ${STAGES.join(", ")}, got ${stage ? `"${stage}"` : "nothing"}`);
  }
  const script = join(TRAINING, `${stage}.py`);
  const python = process.env.ATELIER_PYTHON ?? "/usr/bin/python3";
  if (!existsSync(python)) throw invalid("ATELIER_PYTHON", `no Python interpreter at ${python}`);
  const child = spawn(python, [script, ...rest], { stdio: "inherit" });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  return await new Promise<number>((done) => {
    child.on("error", (error) => {
      console.error(`error: cannot run ${python}: ${error.message}`);
      done(1);
    });
    child.on("close", (code, signal) => {
      process.off("SIGINT", forward);
      process.off("SIGTERM", forward);
      done(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
