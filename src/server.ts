import { Hono } from "hono";
import { AtelierError } from "./errors.ts";
import { VERSION } from "./version.ts";

/** What the server knows about each model set it serves: loaded, or missing with the reason. */
export type ModelStatus = { status: "loaded"; path: string } | { status: "missing"; reason: string };

export interface AppOptions {
  models: () => Record<string, ModelStatus>;
}

/** Builds the HTTP application; the caller decides how to listen (node server, tests). */
export function createApp(options: AppOptions): Hono {
  const app = new Hono();

  app.get("/health", (c) => c.json({ status: "ok", version: VERSION, models: options.models() }));

  app.onError((error, c) => {
    if (error instanceof AtelierError) {
      return c.json(
        {
          error: {
            message: error.message,
            type: "invalid_request_error",
            param: error.param,
            code: error.code,
          },
        },
        error.status as 400,
      );
    }
    console.error(error);
    return c.json(
      { error: { message: "internal error", type: "server_error", param: null, code: "internal" } },
      500,
    );
  });

  return app;
}
