import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { serve } from "@hono/node-server";
import { createApp, type ModelStatus } from "../server.ts";

export const usage = `atelier serve [--port N] [--host H]

Starts the HTTP service (default port: $PORT or 8787, host 127.0.0.1).`;

const EMBEDDED_MODELS = ["ldm", "planner", "projection"] as const;

function embeddedModelStatus(root: string): Record<string, ModelStatus> {
  const models: Record<string, ModelStatus> = {};
  for (const name of EMBEDDED_MODELS) {
    const path = resolve(root, name);
    models[name] = existsSync(path)
      ? { status: "loaded", path }
      : { status: "missing", reason: `no folder ${path}` };
  }
  return models;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { port: { type: "string" }, host: { type: "string" }, models: { type: "string" } },
    strict: true,
  });
  const port = Number(values.port ?? process.env.PORT ?? 8787);
  const host = values.host ?? process.env.HOST ?? "127.0.0.1";
  const modelsRoot = resolve(values.models ?? process.env.ATELIER_MODELS ?? "models");
  const models = embeddedModelStatus(modelsRoot);
  const app = createApp({ models: () => models });
  const server = serve({ fetch: app.fetch, port, hostname: host }, (info) => {
    console.log(`atelier listening on http://${host}:${info.port}`);
  });
  await new Promise<void>((done) => {
    const stop = () => server.close(() => done());
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return 0;
}
