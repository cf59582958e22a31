/**
 * `atelier` command line. Each subcommand lives in `src/commands/<name>.ts` and exports `usage` and
 * `run(argv) → exit code`. Exit codes: 0 success, 1 failure while running, 2 bad usage.
 */
import { AtelierError } from "./errors.ts";

type Command = { usage: string; run: (argv: string[]) => Promise<number> };

const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: () => import("./commands/serve.ts"),
  world: () => import("./commands/world.ts"),
  eval: () => import("./commands/eval.ts"),
  plan: () => import("./commands/plan.ts"),
  bench: () => import("./commands/bench.ts"),
  train: () => import("./commands/train.ts"),
  generate: () => import("./commands/generate.ts"),
  chat: () => import("./commands/chat.ts"),
  mcp: () => import("./commands/mcp.ts"),
};

const topUsage = `atelier <command> [options]

Commands: ${Object.keys(COMMANDS).join(", ")}
Run \`atelier <command> --help\` for the options of one command.`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h") {
    console.log(topUsage);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`unknown command: ${name}\n\n${topUsage}`);
    return 2;
  }
  const command = await load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    // parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes on unknown or malformed flags.
    const code = (error as { code?: string }).code ?? "";
    if (code.startsWith("ERR_PARSE_ARGS")) {
      console.error(`${(error as Error).message}\n\n${command.usage}`);
      return 2;
    }
    if (error instanceof AtelierError) {
      console.error(`error: ${error.message}`);
      return error.status < 500 ? 2 : 1;
    }
    throw error;
  }
}

process.exitCode = await main(process.argv.slice(2));
