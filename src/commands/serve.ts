import { parseArgs } from "node:util";
import { invalid } from "../errors.ts";
import { configFromEnv, startServer } from "../service/start.ts";

export const usage = `atelier serve [--port N] [--host H] [--models DIR] [--data DIR] [--concurrency N] [--queue N]

Starts the HTTP service: agent API, edit sessions, OpenAI-compatible image endpoints, /docs.
  --port N         port (default: $PORT or 8787; 0 = any free port)
  --host H         interface (default: $HOST or 127.0.0.1)
  --models DIR     model folders ldm/, planner/, projection/ (default: $ATELIER_MODELS or models)
  --data DIR       database and images (default: $ATELIER_DATA or .atelier)
  --concurrency N  jobs run at once (default: $ATELIER_CONCURRENCY or 1)
  --queue N        jobs that may wait; more get 429 (default: $ATELIER_QUEUE or 32)
Environment: ATELIER_API_KEYS (comma-separated bearer keys; unset = open), ATELIER_LDM, ATELIER_PLANNER,
ATELIER_PROJECTION,
ATELIER_JOB_TIMEOUT_MS (300000), ATELIER_SHUTDOWN_GRACE_MS (10000), ATELIER_THREADS, ATELIER_PUBLIC_URL.`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      models: { type: "string" },
      data: { type: "string" },
      concurrency: { type: "string" },
      queue: { type: "string" },
    },
    strict: true,
  });
  const count = (name: string, value: string | undefined, min: number) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw invalid(name, `must be an integer ≥ ${min}, got "${value}"`);
    return n;
  };
  const config = configFromEnv({
    ...process.env,
    ...(values.models ? { ATELIER_MODELS: values.models } : {}),
    ...(values.data ? { ATELIER_DATA: values.data } : {}),
    ...(values.host ? { HOST: values.host } : {}),
  });
  config.port = count("port", values.port, 0) ?? config.port;
  config.concurrency = count("concurrency", values.concurrency, 1) ?? config.concurrency;
  config.capacity = count("queue", values.queue, 0) ?? config.capacity;

  const server = await startServer(config);
  const engine = server.service.engine?.info.name ?? `no engine (${server.service.engineProblem})`;
  console.log(`atelier listening on ${server.url} (${engine}; data in ${config.dataDir})`);
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      console.log(`atelier: ${signal}, shutting down`);
      server.close().then(done, (error: unknown) => {
        console.error(error);
        done();
      });
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
  return 0;
}
