/** Atelier's public entry: what programs embedding Atelier import. */
export { AtelierError } from "./errors.ts";
export { type AppOptions, createApp } from "./server.ts";
export { VERSION } from "./version.ts";
