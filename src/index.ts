/** Atelier's public entry: what programs embedding Atelier import. */
export * from "../pipelines/index.ts";
export { type ChatMessage, checkPromptText, Planner, type PlanResult } from "../planner/planner.ts";
export { AtelierError } from "./errors.ts";
export { type AppOptions, createApp } from "./server.ts";
export { VERSION } from "./version.ts";
