import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { encodePng } from "../../pipelines/image.ts";
import { randomSeed } from "../../pipelines/random.ts";
import { loadLocalEngine } from "../client/local.ts";
import { ProgressView } from "../client/terminal.ts";
import { AtelierError } from "../errors.ts";
import type { SessionState } from "../service/engine.ts";
import { parseInput, SessionMessage } from "../service/schemas.ts";
import { numeric } from "./generate.ts";

export const usage = `atelier chat [--out-dir DIR] [--seed N] [--steps N] [--guidance G] [--sampler NAME] [--rounds N]
             [--models DIR]

An edit session in this process: the first message makes an image, each later one edits it (same seed and
sampler, img2img from the last image). Every image is written to DIR/turn-<k>.png (default DIR: .).
Commands:
  /undo        go back to the image before the last message
  /save FILE   copy the current image to FILE
  /help        this text
  /quit        leave (so does end of input)
Options as for \`atelier generate\`; --seed is the first image's seed (default: random).`;

interface Turn {
  state: SessionState;
  file: string | null;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "out-dir": { type: "string" },
      seed: { type: "string" },
      steps: { type: "string" },
      guidance: { type: "string" },
      sampler: { type: "string" },
      rounds: { type: "string" },
      models: { type: "string" },
    },
    strict: true,
  });
  // Validated as a session message would be, so a bad value names its flag.
  const { text: _, ...settings } = parseInput(SessionMessage, {
    text: "-",
    seed: numeric(values.seed) ?? randomSeed(),
    steps: numeric(values.steps),
    guidance: numeric(values.guidance),
    sampler: values.sampler,
    rounds: numeric(values.rounds),
  });
  const outDir = resolve(values["out-dir"] ?? ".");
  mkdirSync(outDir, { recursive: true });

  const engine = await loadLocalEngine({ models: values.models });
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const progress = new ProgressView(process.stderr);
  const lines = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined });
  const turns: Turn[] = [
    { state: { history: [], image: null, seed: null, sampler: null, plan: null }, file: null },
  ];
  let written = 0;
  let running: AbortController | null = null;
  lines.on("SIGINT", () => {
    if (running) running.abort();
    else lines.close();
  });
  const prompt = () => {
    if (tty) lines.prompt();
  };

  console.log(`atelier chat: ${engine.info.name}; images go to ${outDir}. /help lists the commands.`);
  prompt();
  try {
    for await (const raw of lines) {
      const line = raw.trim();
      const current = turns.at(-1)!;
      if (line === "/quit" || line === "/exit") {
        break;
      } else if (line === "/help") {
        console.log(usage.slice(usage.indexOf("Commands:")));
      } else if (line === "/undo") {
        if (turns.length === 1) console.log("nothing to undo");
        else {
          turns.pop();
          console.log(`back to ${turns.at(-1)!.file ?? "the empty canvas"}`);
        }
      } else if (line.startsWith("/save")) {
        const target = line.slice(5).trim();
        if (!target) console.log("usage: /save FILE");
        else if (!current.file) console.log("no image yet");
        else {
          mkdirSync(dirname(resolve(target)), { recursive: true });
          copyFileSync(current.file, resolve(target));
          console.log(`saved ${resolve(target)}`);
        }
      } else if (line.startsWith("/")) {
        console.log(`unknown command ${line.split(/\s/)[0]}; /help lists them`);
      } else if (line !== "") {
        running = new AbortController();
        try {
          const message = parseInput(SessionMessage, { text: line });
          const result = await engine.edit(
            current.state,
            { text: message.text },
            // An edit keeps the session's seed; the first image uses the chosen one.
            current.state.image ? { ...settings, seed: undefined } : settings,
            { signal: running.signal, onEvent: (event) => progress.show(event) },
          );
          progress.clear();
          const image = result.images[0]!;
          const file = join(outDir, `turn-${++written}.png`);
          writeFileSync(file, encodePng(image));
          const last = result.trace.at(-1);
          const plan = result.plans[0] ?? null;
          turns.push({
            state: {
              history: [
                ...current.state.history,
                { role: "user", text: message.text },
                { role: "assistant", text: last?.caption ?? plan ?? "", plan },
              ],
              image,
              seed: result.seeds[0] ?? null,
              sampler: last?.settings.sampler ?? null,
              plan,
            },
            file,
          });
          console.log(`${file}  seed ${result.seeds[0]}${plan ? `\n  ${plan}` : ""}`);
        } catch (error) {
          progress.clear();
          if (running.signal.aborted) console.log("cancelled");
          else if (error instanceof AtelierError) console.log(`error: ${error.message}`);
          else throw error;
        } finally {
          running = null;
        }
      }
      prompt();
    }
  } finally {
    lines.close();
    await engine.dispose();
  }
  return 0;
}
