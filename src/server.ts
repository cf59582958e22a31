import { join, resolve } from "node:path";
import { Hono } from "hono";
import { AtelierError } from "./errors.ts";
import { registerMcpRoute } from "./mcp/http.ts";
import { ApiKeys } from "./service/auth.ts";
import { type ApiEnv, registerRoutes } from "./service/routes.ts";
import type { AtelierService } from "./service/service.ts";
import { VERSION } from "./version.ts";
import { registerWebRoutes } from "./web/routes.ts";

/** What the server knows about each model set it serves: loaded, or missing with the reason. */
export type ModelStatus = { status: "loaded"; path: string } | { status: "missing"; reason: string };

export interface AppOptions {
  models: () => Record<string, ModelStatus>;
  /** The service behind /v1 (without it the app only answers /health). */
  service?: AtelierService;
  /** Bearer keys; none = open. */
  keys?: ApiKeys;
  /** Base of the URLs the API hands out (default: the request's origin). */
  publicUrl?: string;
  /** Describer model folder for MCP describe_image (default: $ATELIER_DESCRIBER or <models>/describer). */
  describer?: string | null;
}

/** OpenAI's error types by status. */
function errorType(status: number): string {
  if (status === 429) return "requests";
  return status >= 500 ? "server_error" : "invalid_request_error";
}

/** Any error as OpenAI's `{error: {message, type, param, code}}` with its status (unknown errors: 500). */
export function errorResponse(error: unknown): {
  status: number;
  body: unknown;
  headers: Record<string, string>;
} {
  if (error instanceof AtelierError) {
    // 499 is the pipelines' "cancelled"; over HTTP a cancelled job is a conflict with the request.
    const status = error.status === 499 ? 409 : error.status;
    const retryAfter = (error as AtelierError & { retryAfter?: number }).retryAfter;
    return {
      status,
      body: {
        error: { message: error.message, type: errorType(status), param: error.param, code: error.code },
      },
      headers: retryAfter ? { "retry-after": String(retryAfter) } : {},
    };
  }
  console.error(error);
  return {
    status: 500,
    body: { error: { message: "internal error", type: "server_error", param: null, code: "internal" } },
    headers: {},
  };
}

/** Builds the HTTP application; the caller decides how to listen (node server, tests). */
export function createApp(options: AppOptions): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const service = options.service;

  if (service) {
    app.use("*", async (c, next) => {
      const started = performance.now();
      await next();
      const labels = { method: c.req.method, route: c.req.routePath, status: String(c.res.status) };
      service.metrics.requests.inc(labels);
      service.metrics.requestSeconds.observe((performance.now() - started) / 1000, { route: labels.route });
    });
  }

  app.get("/health", (c) =>
    c.json({
      status: "ok",
      version: VERSION,
      models: options.models(),
      ...(service
        ? {
            engine: service.engine?.info ?? { problem: service.engineProblem },
            queue: service.queue.stats(),
          }
        : {}),
    }),
  );

  if (service) {
    const keys = options.keys ?? new ApiKeys([]);
    registerRoutes(app, service, keys, options.publicUrl);
    const describer =
      options.describer !== undefined
        ? options.describer
        : resolve(process.env.ATELIER_DESCRIBER ?? join(process.env.ATELIER_MODELS ?? "models", "describer"));
    registerMcpRoute(app, { keys, describer, publicUrl: options.publicUrl });
    registerWebRoutes(app);
  }

  app.notFound((c) =>
    c.json(
      {
        error: {
          message: `no route ${c.req.method} ${new URL(c.req.url).pathname}`,
          type: "invalid_request_error",
          param: null,
          code: "unknown_route",
        },
      },
      404,
    ),
  );

  app.onError((error, c) => {
    const { status, body, headers } = errorResponse(error);
    const code = (body as { error: { code: string } }).error.code;
    service?.metrics.errors.inc({ code });
    for (const [name, value] of Object.entries(headers)) c.header(name, value);
    return c.json(body, status as 400);
  });

  return app;
}
