/**
 * Atelier in this process, for the command line (`generate`, `chat`, `mcp`): the engine over the model
 * folders that `atelier serve` uses (same environment variables, same folder rules), and — for `mcp` — the
 * whole service over a data folder, reached through an in-process client.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { invalid } from "../errors.ts";
import type { Engine } from "../service/engine.ts";
import { AtelierService } from "../service/service.ts";
import { configFromEnv, loadEngine, modelFolders } from "../service/start.ts";
import { AtelierClient } from "./client.ts";

export interface LocalOptions {
  /** Root of the model folders (default: $ATELIER_MODELS or models). */
  models?: string;
  threads?: number;
}

/** The model folders `atelier serve` would use with these options and environment. */
export function localModelFolders(options: LocalOptions = {}) {
  const config = configFromEnv({
    ...process.env,
    ...(options.models === undefined ? {} : { ATELIER_MODELS: options.models }),
  });
  return {
    ...modelFolders(config),
    root: config.modelsRoot,
    describer: resolve(process.env.ATELIER_DESCRIBER ?? join(config.modelsRoot, "describer")),
    threads: options.threads ?? config.threads,
  };
}

/** Loads the engine the service would run; a missing diffusion model folder names the `models` option. */
export async function loadLocalEngine(options: LocalOptions = {}): Promise<Engine> {
  const folders = localModelFolders(options);
  if (!existsSync(folders.ldm))
    throw invalid("models", `no diffusion model folder at ${folders.ldm} (set --models or ATELIER_MODELS)`);
  return loadEngine(folders, folders.threads);
}

export interface LocalService {
  service: AtelierService;
  client: AtelierClient;
  /** The describer folder (describe_image uses it when it exists). */
  describer: string;
  close(): Promise<void>;
}

/** The service with its own storage in `dataDir`, and an in-process client of it. */
export async function openLocalService(options: LocalOptions & { dataDir: string }): Promise<LocalService> {
  const engine = await loadLocalEngine(options);
  const service = new AtelierService({ dataDir: options.dataDir, engine });
  return {
    service,
    client: AtelierClient.inProcess(service),
    describer: localModelFolders(options).describer,
    close: () => service.close(),
  };
}
