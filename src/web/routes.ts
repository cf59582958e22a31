/**
 * The web chat: static files served at `/` and `/web/*` (no build step). The Content-Security-Policy keeps
 * the page to its own origin, so it makes no external requests even by mistake.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Hono } from "hono";
import type { ApiEnv } from "../service/routes.ts";

const FILES: Record<string, string> = {
  "app.js": "text/javascript; charset=utf-8",
  "style.css": "text/css; charset=utf-8",
};

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

export function registerWebRoutes(app: Hono<ApiEnv>): void {
  const read = (name: string) => readFileSync(join(import.meta.dirname, name));
  const page = read("index.html");
  const assets = new Map(Object.keys(FILES).map((name) => [name, read(name)]));
  const headers = (type: string) => ({
    "content-type": type,
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
  });
  app.get("/", (c) => c.body(new Uint8Array(page), 200, headers("text/html; charset=utf-8")));
  app.get("/web/:file", (c) => {
    const name = c.req.param("file");
    const body = assets.get(name);
    if (!body) return c.notFound();
    return c.body(new Uint8Array(body), 200, headers(FILES[name]!));
  });
}
