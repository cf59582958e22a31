/**
 * The OpenAPI 3.1 document, built from the same zod schemas the routes validate with, and /docs: a
 * self-contained HTML page (no scripts, no external requests) listing every route with its schemas.
 */
import { z } from "zod";
import { VERSION } from "../version.ts";
import {
  ErrorBody,
  Generation,
  GenerationCreated,
  GenerationRequest,
  Message,
  OpenAIImageEdit,
  OpenAIImageGeneration,
  OpenAIImagesResponse,
  Session,
  SessionCreate,
  SessionDeleted,
  SessionMessage,
} from "./schemas.ts";

interface RouteDoc {
  method: "get" | "post" | "delete";
  path: string;
  summary: string;
  body?: { schema: z.ZodType; type: "application/json" | "multipart/form-data" };
  ok: { status: number; schema?: z.ZodType; type?: string };
  /** Open to everyone even when API keys are set. */
  public?: boolean;
}

export const ROUTES: RouteDoc[] = [
  {
    method: "post",
    path: "/v1/generations",
    summary: "Queue a generation from a prompt or a plan; returns at once with its id.",
    body: { schema: GenerationRequest, type: "application/json" },
    ok: { status: 202, schema: GenerationCreated },
  },
  {
    method: "get",
    path: "/v1/generations/{id}",
    summary: "A generation: status, plans, images, seeds used, trace and timings.",
    ok: { status: 200, schema: Generation },
  },
  {
    method: "get",
    path: "/v1/generations/{id}/events",
    summary:
      "Server-sent events of a generation, from the first (past events are replayed; Last-Event-ID resumes): queued, planning, plan, conditioning, step, describing, critique, revised, done, error. The stream ends after done or error.",
    ok: { status: 200, type: "text/event-stream" },
  },
  {
    method: "post",
    path: "/v1/generations/{id}/cancel",
    summary: "Cancel a queued or running generation; answers once it has stopped.",
    ok: { status: 200, schema: Generation },
  },
  {
    method: "post",
    path: "/v1/sessions",
    summary: "Start an edit session.",
    body: { schema: SessionCreate, type: "application/json" },
    ok: { status: 201, schema: Session },
  },
  {
    method: "get",
    path: "/v1/sessions/{id}",
    summary: "A session with its whole history.",
    ok: { status: 200, schema: Session },
  },
  {
    method: "delete",
    path: "/v1/sessions/{id}",
    summary: "Delete a session, its messages and images.",
    ok: { status: 200, schema: SessionDeleted },
  },
  {
    method: "post",
    path: "/v1/sessions/{id}/messages",
    summary:
      "Send a message: the first makes an image, later ones edit it (img2img from the last image with its seed, or inpainting inside a mask). Answers with the assistant's message; with `Prefer: respond-async`, answers 202 with the generation's id at once (follow its events).",
    body: { schema: SessionMessage, type: "application/json" },
    ok: { status: 200, schema: Message },
  },
  {
    method: "get",
    path: "/v1/images/{id}",
    summary: "An image as PNG (with the bearer key of its owner, or through a signed URL from any response).",
    ok: { status: 200, type: "image/png" },
  },
  {
    method: "post",
    path: "/v1/images/generations",
    summary: "OpenAI-compatible image generation; revised_prompt is the plan.",
    body: { schema: OpenAIImageGeneration, type: "application/json" },
    ok: { status: 200, schema: OpenAIImagesResponse },
  },
  {
    method: "post",
    path: "/v1/images/edits",
    summary: "OpenAI-compatible image edit (multipart); the mask's transparent pixels mark the area to edit.",
    body: { schema: OpenAIImageEdit, type: "multipart/form-data" },
    ok: { status: 200, schema: OpenAIImagesResponse },
  },
  {
    method: "post",
    path: "/mcp",
    summary:
      "MCP server (Streamable HTTP, stateless; JSON-RPC): tools generate_image, edit_image and describe_image with these routes' schemas, results as PNG image content plus structured metadata, denoising steps as progress notifications.",
    ok: { status: 200, type: "text/event-stream" },
  },
  {
    method: "get",
    path: "/",
    summary: "The web chat (one edit session per conversation, over this API).",
    ok: { status: 200, type: "text/html" },
    public: true,
  },
  {
    method: "get",
    path: "/health",
    summary: "Status, version and models.",
    ok: { status: 200, type: "application/json" },
    public: true,
  },
  {
    method: "get",
    path: "/metrics",
    summary: "Prometheus metrics.",
    ok: { status: 200, type: "text/plain" },
    public: true,
  },
  {
    method: "get",
    path: "/openapi.json",
    summary: "This document.",
    ok: { status: 200, type: "application/json" },
    public: true,
  },
  {
    method: "get",
    path: "/docs",
    summary: "The API as a page.",
    ok: { status: 200, type: "text/html" },
    public: true,
  },
];

function jsonSchema(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
  return rest;
}

const ERROR_STATUSES: Record<string, string> = {
  "400": "Bad input; `error.param` names the field.",
  "401": "Missing or wrong API key.",
  "404": "Unknown id, or owned by another key.",
  "413": "Body or upload too large.",
  "429": "Queue full; see Retry-After.",
  "503": "No model loaded, or shutting down.",
};

export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const error = { content: { "application/json": { schema: jsonSchema(ErrorBody, "output") } } };
  for (const route of ROUTES) {
    const params = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
      name: m[1],
      in: "path",
      required: true,
      schema: { type: "string" },
    }));
    const okContent = route.ok.schema
      ? { "application/json": { schema: jsonSchema(route.ok.schema, "output") } }
      : { [route.ok.type!]: {} };
    paths[route.path] ??= {};
    paths[route.path]![route.method] = {
      summary: route.summary,
      ...(params.length ? { parameters: params } : {}),
      ...(route.body
        ? {
            requestBody: {
              required: true,
              content: { [route.body.type]: { schema: jsonSchema(route.body.schema, "input") } },
            },
          }
        : {}),
      ...(route.public ? { security: [] } : {}),
      responses: {
        [String(route.ok.status)]: { description: "OK", content: okContent },
        ...(route.public
          ? {}
          : Object.fromEntries(
              Object.entries(ERROR_STATUSES).map(([status, description]) => [
                status,
                { description, ...error },
              ]),
            )),
      },
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Atelier",
      version: VERSION,
      description:
        "An LLM plans an image in planning tokens; a latent-diffusion model renders the plan. Agent API, edit sessions and OpenAI-compatible image endpoints.",
    },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    security: [{ bearer: [] }],
    paths,
  };
}

const escapeHtml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function docsPage(document: Record<string, unknown>): string {
  const paths = document.paths as Record<string, Record<string, Record<string, unknown>>>;
  const sections = Object.entries(paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => {
      const body = (op.requestBody as { content: Record<string, { schema: unknown }> } | undefined)?.content;
      const [type, content] = body ? Object.entries(body)[0]! : [null, null];
      const responses = op.responses as Record<
        string,
        { description: string; content?: Record<string, { schema?: unknown }> }
      >;
      const ok = Object.entries(responses)[0]!;
      const okSchema = ok[1].content && Object.values(ok[1].content)[0]?.schema;
      return `<section id="${escapeHtml(`${method}-${path}`)}">
<h2><span class="m">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h2>
<p>${escapeHtml(String(op.summary))}</p>
${content ? `<details><summary>Request body (${escapeHtml(type!)})</summary><pre>${escapeHtml(JSON.stringify(content.schema, null, 2))}</pre></details>` : ""}
${okSchema ? `<details><summary>Response ${ok[0]}</summary><pre>${escapeHtml(JSON.stringify(okSchema, null, 2))}</pre></details>` : `<p>Response ${ok[0]}: ${escapeHtml(Object.keys(ok[1].content ?? {})[0] ?? "")}</p>`}
</section>`;
    }),
  );
  const info = document.info as { title: string; version: string; description: string };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(info.title)} API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{font-size:1.05rem;margin:1.6rem 0 .3rem}.m{display:inline-block;min-width:4.2rem;font-weight:700;color:#2456a6}
pre{background:#f5f5f5;padding:.7rem;overflow:auto;font-size:12px}code{font-size:14px}section{border-top:1px solid #ddd}
</style></head><body>
<h1>${escapeHtml(info.title)} API <small>${escapeHtml(info.version)}</small></h1>
<p>${escapeHtml(info.description)}</p>
<p>Errors are <code>{"error": {"message", "type", "param", "code"}}</code> with OpenAI's status codes; <code>param</code> names the offending field. With API keys configured, send <code>Authorization: Bearer &lt;key&gt;</code>. Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
${sections.join("\n")}
</body></html>`;
}
