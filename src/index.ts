/** Atelier's public entry: what programs embedding Atelier import. */
export * from "../pipelines/index.ts";
export { type ChatMessage, checkPromptText, Planner, type PlanResult } from "../planner/planner.ts";
export { AtelierClient, type ImageOutcome } from "./client/client.ts";
export { loadLocalEngine } from "./client/local.ts";
export { AtelierError } from "./errors.ts";
export { createAtelierTools } from "./langchain/tools.ts";
export { createMcpServer } from "./mcp/server.ts";
export { type AppOptions, createApp } from "./server.ts";
export type { Engine, EngineEvent, GenerateRequest, SessionState } from "./service/engine.ts";
export { AtelierService } from "./service/service.ts";
export { configFromEnv, type ServiceConfig, startServer } from "./service/start.ts";
export { VERSION } from "./version.ts";
