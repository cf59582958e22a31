/**
 * Starting and stopping the whole service: models loaded once, storage opened (interrupted generations
 * marked failed), the HTTP server listening; `close()` stops accepting connections, lets running jobs
 * finish within the grace period (cancelling the rest), waits for in-flight responses and closes the
 * database. Used by `atelier serve` and by tests (port 0 picks a free port).
 */
import { existsSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { serve } from "@hono/node-server";
import { AgentEngine } from "../agent/engine.ts";
import { createApp, type ModelStatus } from "../server.ts";
import { ApiKeys } from "./auth.ts";
import type { Engine } from "./engine.ts";
import { NativeEngine } from "./native-engine.ts";
import { AtelierService } from "./service.ts";

export interface ServiceConfig {
  port: number;
  host: string;
  /** Root of the embedded model folders (ldm/, planner/, projection/, describer/). */
  modelsRoot: string;
  /** Override folders (default: modelsRoot/ldm, modelsRoot/planner, modelsRoot/projection, modelsRoot/describer). */
  ldm?: string;
  planner?: string;
  projection?: string;
  describer?: string;
  dataDir: string;
  apiKeys: string[];
  concurrency: number;
  capacity: number;
  timeoutMs: number;
  /** Time running jobs get to finish at shutdown. */
  graceMs: number;
  threads?: number;
  publicUrl?: string;
}

/** Configuration from the environment (ATELIER_*), with `atelier serve`'s defaults. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const int = (name: string, fallback: number) => {
    const value = env[name];
    if (value === undefined || value === "") return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw new RangeError(`${name} must be a non-negative integer, got "${value}"`);
    return n;
  };
  return {
    port: int("PORT", 8787),
    host: env.HOST ?? "127.0.0.1",
    modelsRoot: resolve(env.ATELIER_MODELS ?? "models"),
    ldm: env.ATELIER_LDM,
    planner: env.ATELIER_PLANNER,
    projection: env.ATELIER_PROJECTION,
    describer: env.ATELIER_DESCRIBER,
    dataDir: resolve(env.ATELIER_DATA ?? ".atelier"),
    apiKeys: (env.ATELIER_API_KEYS ?? "").split(",").filter((k) => k.trim()),
    concurrency: Math.max(1, int("ATELIER_CONCURRENCY", 1)),
    capacity: int("ATELIER_QUEUE", 32),
    timeoutMs: Math.max(1, int("ATELIER_JOB_TIMEOUT_MS", 300_000)),
    graceMs: int("ATELIER_SHUTDOWN_GRACE_MS", 10_000),
    threads: env.ATELIER_THREADS ? Math.max(1, int("ATELIER_THREADS", 1)) : undefined,
    publicUrl: env.ATELIER_PUBLIC_URL?.replace(/\/$/, ""),
  };
}

export interface RunningServer {
  url: string;
  port: number;
  service: AtelierService;
  close(): Promise<void>;
}

function folderStatus(path: string): ModelStatus {
  return existsSync(path) ? { status: "loaded", path } : { status: "missing", reason: `no folder ${path}` };
}

export interface ModelFolders {
  ldm: string;
  planner: string;
  projection: string;
  describer: string;
}

/** The model folders a configuration names (explicit folders, else the models root's ldm/planner/projection). */
export function modelFolders(config: ServiceConfig): ModelFolders {
  return {
    ldm: resolve(config.ldm ?? resolve(config.modelsRoot, "ldm")),
    planner: resolve(config.planner ?? resolve(config.modelsRoot, "planner")),
    projection: resolve(config.projection ?? resolve(config.modelsRoot, "projection")),
    describer: resolve(config.describer ?? resolve(config.modelsRoot, "describer")),
  };
}

/**
 * The engine over those folders: with a planner and a describer, the critique-loop agent; otherwise the
 * single-pass engine. The planner and the projection are used when their folders exist.
 */
export function loadEngine(folders: ModelFolders, threads?: number): Promise<Engine> {
  if (existsSync(folders.planner) && existsSync(folders.describer))
    return AgentEngine.load({
      ldm: folders.ldm,
      planner: folders.planner,
      projection: existsSync(folders.projection) ? folders.projection : null,
      describer: folders.describer,
      threads,
    });
  return NativeEngine.load({
    ldm: folders.ldm,
    planner: existsSync(folders.planner) ? folders.planner : null,
    projection: existsSync(folders.projection) ? folders.projection : null,
    threads,
  });
}

export async function startServer(config: ServiceConfig): Promise<RunningServer> {
  const folders = modelFolders(config);
  const { ldm, planner, projection, describer } = folders;
  const models: Record<string, ModelStatus> = {
    ldm: folderStatus(ldm),
    planner: folderStatus(planner),
    projection: folderStatus(projection),
    describer: folderStatus(describer),
  };
  let engine: Engine | null = null;
  let engineProblem: string | undefined;
  if (existsSync(ldm)) {
    try {
      engine = await loadEngine(folders, config.threads);
    } catch (error) {
      engineProblem = (error as Error).message;
      models.ldm = { status: "missing", reason: engineProblem };
      console.error(`atelier: could not load the models: ${engineProblem}`);
    }
  } else {
    engineProblem = `no diffusion model folder at ${ldm}`;
  }
  const service = new AtelierService({
    dataDir: config.dataDir,
    engine,
    engineProblem,
    concurrency: config.concurrency,
    capacity: config.capacity,
    timeoutMs: config.timeoutMs,
  });
  const app = createApp({
    models: () => models,
    service,
    keys: new ApiKeys(config.apiKeys),
    publicUrl: config.publicUrl,
  });
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }) as Server;
  await new Promise<void>((done, fail) => {
    server.once("listening", done);
    server.once("error", fail);
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      const stopped = new Promise<void>((done) => server.close(() => done()));
      server.closeIdleConnections();
      await service.drain(config.graceMs);
      // In-flight responses end once their jobs have; streams end with their generations.
      const late = setTimeout(() => server.closeAllConnections(), 2000);
      await stopped;
      clearTimeout(late);
      await service.close();
    })();
    return closing;
  };
  return { url: `http://${config.host}:${port}`, port, service, close };
}
