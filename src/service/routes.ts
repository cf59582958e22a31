/**
 * The HTTP API over AtelierService: the agent API (/v1/generations, /v1/sessions, /v1/images/:id), the
 * OpenAI-compatible image endpoints, metrics, the OpenAPI document and its HTML page. Every body is read
 * under a size limit and validated by its route's zod schema (schemas.ts).
 */
import type { Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import { parsePlan } from "../../evals/language/plan.ts";
import { flattenAlpha, type Mask, type RgbImage } from "../../pipelines/image.ts";
import { AtelierError, invalid } from "../errors.ts";
import { type ApiKeys, unauthorized } from "./auth.ts";
import { docsPage, openApiDocument } from "./openapi.ts";
import {
  GenerationRequest,
  MAX_UPLOAD_BYTES,
  OpenAIImageEdit,
  OpenAIImageGeneration,
  parseInput,
  SessionCreate,
  SessionMessage,
} from "./schemas.ts";
import type { AtelierService } from "./service.ts";
import type { GenerationRow, MessageRow, StoredEvent } from "./store.ts";
import { alphaMask, decodeBase64Upload, decodeUpload, hasTransparency, maskFromUpload } from "./uploads.ts";

export type ApiEnv = { Variables: { owner: string | null } };

const KB = 1024;
const MB = 1024 * KB;
/** JSON bodies without images. */
const SMALL_BODY = 64 * KB;
/** A session message may carry an image and a mask as base64 (4/3 of 2 × 4 MB, plus the fields). */
const MESSAGE_BODY = 12 * MB;
/** A multipart edit: image and mask files plus the fields. */
const EDIT_BODY = 2 * MAX_UPLOAD_BYTES + 256 * KB;

const limit = (maxSize: number) =>
  bodyLimit({
    maxSize,
    onError: () => {
      throw new AtelierError(`body: the request body is larger than ${maxSize / KB} KB`, {
        status: 413,
        code: "body_too_large",
        param: "body",
      });
    },
  });

async function readJson(c: Context, emptyAs?: unknown): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "" && emptyAs !== undefined) return emptyAs;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new AtelierError(`body: not valid JSON (${(error as Error).message})`, {
      status: 400,
      code: "invalid_json",
      param: "body",
    });
  }
}

function owner(c: Context<ApiEnv>): string {
  const value = c.get("owner");
  if (value === null)
    throw unauthorized("an API key is required (Authorization: Bearer <key>)", "missing_api_key");
  return value;
}

export function registerRoutes(
  app: Hono<ApiEnv>,
  service: AtelierService,
  keys: ApiKeys,
  publicUrl?: string,
) {
  const origin = (c: Context) => publicUrl ?? new URL(c.req.url).origin;
  const imageRef = (c: Context, id: string | null) =>
    id ? { id, url: `${origin(c)}${service.signedImagePath(id)}` } : null;

  app.use("/v1/*", async (c, next) => {
    c.set("owner", keys.owner(c.req.header("authorization")));
    await next();
  });

  const checkSize = (image: RgbImage, field: string) => {
    const sizes = service.requireEngine().info.sizes;
    if (!sizes.some((s) => s.width === image.width && s.height === image.height))
      throw invalid(
        field,
        `is ${image.width}×${image.height}; this model works on ${sizes.map((s) => `${s.width}×${s.height}`).join(", ")} images`,
      );
  };
  const checkRequestedSize = (size: string | undefined) => {
    const sizes = service.requireEngine().info.sizes.map((s) => `${s.width}x${s.height}`);
    if (size !== undefined && !sizes.includes(size))
      throw invalid("size", `must be one of ${sizes.map((s) => `"${s}"`).join(", ")} (got "${size}")`);
  };
  /** Cancels a synchronous request's job when its client goes away. */
  const cancelOnDisconnect = (c: Context, id: string) => {
    c.req.raw.signal?.addEventListener("abort", () => service.queue.cancel(id, "the client disconnected"));
  };
  // Agent API: generations.

  const generationView = (c: Context, row: GenerationRow) => {
    const result = (row.result ?? {}) as {
      plans?: (string | null)[];
      images?: { id: string; seed: number }[];
      seeds?: number[];
      timings?: Record<string, number>;
    };
    const { image_id: _image, mask_id: _mask, ...request } = row.request;
    return {
      id: row.id,
      object: "generation",
      status: row.status,
      kind: row.kind,
      session_id: row.session_id,
      request,
      plans: result.plans ?? [],
      images: (result.images ?? []).map((image) => ({ ...imageRef(c, image.id)!, seed: image.seed })),
      seeds: result.seeds ?? [],
      trace: (row.trace ?? []).map((round) => {
        const r = round as { images?: string[] };
        return { ...r, images: (r.images ?? []).map((id) => imageRef(c, id)) };
      }),
      timings: result.timings ?? {},
      error: row.error
        ? { ...row.error, type: row.error.status >= 500 ? "server_error" : "invalid_request_error" }
        : null,
      created_at: row.created_at,
      started_at: row.started_at,
      finished_at: row.finished_at,
    };
  };

  app.post("/v1/generations", limit(SMALL_BODY), async (c) => {
    const who = owner(c);
    const body = parseInput(GenerationRequest, await readJson(c));
    // A plan that does not parse is the request's fault: refuse it now rather than fail the job later.
    if (body.plan !== undefined) parsePlan(body.plan);
    const { id } = await service.startGeneration(who, "generate", body);
    return c.json({ id, object: "generation", status: "queued" }, 202);
  });

  app.get("/v1/generations/:id", (c) =>
    c.json(generationView(c, service.generation(owner(c), c.req.param("id")))),
  );

  app.post("/v1/generations/:id/cancel", async (c) =>
    c.json(generationView(c, await service.cancel(owner(c), c.req.param("id")))),
  );

  app.get("/v1/generations/:id/events", (c) => {
    const who = owner(c);
    const id = c.req.param("id");
    service.generation(who, id);
    const lastId = Number(c.req.header("last-event-id") ?? 0);
    const after = Number.isInteger(lastId) && lastId > 0 ? lastId : 0;
    return streamSSE(c, async (stream) => {
      const pending: (StoredEvent | null)[] = [];
      let wake: (() => void) | null = null;
      const push = (event: StoredEvent | null) => {
        pending.push(event);
        wake?.();
      };
      const subscription = service.subscribe(who, id, after, push);
      stream.onAbort(() => push(null));
      const write = (event: StoredEvent) => {
        const data: Record<string, unknown> = { ...event.data, seq: event.seq, generation_id: id };
        if (Array.isArray(data.images))
          data.images = (data.images as { id: string }[]).map((image) => ({
            ...image,
            ...imageRef(c, image.id),
          }));
        return stream.writeSSE({ event: event.type, id: String(event.seq), data: JSON.stringify(data) });
      };
      try {
        let last = after;
        for (const event of subscription.replay) {
          await write(event);
          last = event.seq;
        }
        if (!subscription.live) return;
        for (;;) {
          while (pending.length > 0) {
            const event = pending.shift()!;
            if (event === null) return;
            if (event.seq > last) {
              await write(event);
              last = event.seq;
            }
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = null;
        }
      } finally {
        subscription.unsubscribe();
      }
    });
  });

  // Agent API: sessions.

  const messageView = (c: Context, m: MessageRow) => ({
    id: m.id,
    object: "message",
    role: m.role,
    text: m.text,
    plan: m.plan,
    image: imageRef(c, m.image_id),
    mask: imageRef(c, m.mask_image_id),
    seed: m.seed,
    generation_id: m.generation_id,
    created_at: m.created_at,
  });

  app.post("/v1/sessions", limit(SMALL_BODY), async (c) => {
    const who = owner(c);
    const body = parseInput(SessionCreate, await readJson(c, {}));
    const session = service.createSession(who, body.title ?? null);
    const { id, title, created_at } = session;
    return c.json({ id, object: "session", title, created_at, messages: [] }, 201);
  });

  app.get("/v1/sessions/:id", (c) => {
    const session = service.session(owner(c), c.req.param("id"));
    return c.json({
      id: session.id,
      object: "session",
      title: session.title,
      created_at: session.created_at,
      messages: service.messages(session.id).map((m) => messageView(c, m)),
    });
  });

  app.delete("/v1/sessions/:id", async (c) => {
    const id = c.req.param("id");
    await service.deleteSession(owner(c), id);
    return c.json({ id, object: "session", deleted: true });
  });

  app.post("/v1/sessions/:id/messages", limit(MESSAGE_BODY), async (c) => {
    const who = owner(c);
    const session = service.session(who, c.req.param("id"));
    const body = parseInput(SessionMessage, await readJson(c));
    const engine = service.requireEngine();
    if (body.lock && !engine.info.locks)
      throw invalid("lock", "this server's engine has no projection layers, so it cannot lock conditioning");
    let image: RgbImage | undefined;
    if (body.image !== undefined) {
      const upload = decodeBase64Upload(body.image, "image");
      checkSize(upload.image, "image");
      image = upload.alpha ? flattenAlpha(upload.image, upload.alpha) : upload.image;
    }
    let mask: Mask | undefined;
    if (body.mask !== undefined) {
      const base = image ?? service.currentImage(session.id);
      if (!base)
        throw invalid("mask", "needs an image to edit: send image, or make one in this session first");
      mask = maskFromUpload(decodeBase64Upload(body.mask, "mask"), base);
    }
    const { image: _image, mask: _mask, ...settings } = body;
    const uploads = [
      image ? service.saveUpload(who, session.id, image, "input") : undefined,
      mask ? service.saveMask(who, session.id, mask) : undefined,
    ];
    const { id, done } = await service.startGeneration(
      who,
      "edit",
      { ...settings, image_id: uploads[0], mask_id: uploads[1] },
      session.id,
    );
    // `Prefer: respond-async` (RFC 7240): answer at once so the client can follow the generation's events.
    if (/\brespond-async\b/i.test(c.req.header("prefer") ?? ""))
      return c.json({ id, object: "generation", status: "queued", session_id: session.id }, 202);
    cancelOnDisconnect(c, id);
    await done;
    const reply = service
      .messages(session.id)
      .findLast((m) => m.generation_id === id && m.role === "assistant")!;
    return c.json(messageView(c, reply));
  });

  // Images.

  app.get("/v1/images/:id", (c) => {
    const png = service.imagePng(c.get("owner"), c.req.param("id"), {
      expires: c.req.query("expires"),
      sig: c.req.query("sig"),
    });
    return c.body(new Uint8Array(png), 200, {
      "content-type": "image/png",
      "cache-control": "private, max-age=3600",
    });
  });

  // OpenAI-compatible endpoints.

  const openAiResponse = (
    c: Context,
    row: GenerationRow,
    format: "b64_json" | "url" | undefined,
    prompt: string,
  ) => {
    const result = row.result as { plans: (string | null)[]; images: { id: string }[] };
    return {
      created: Math.floor((row.finished_at ?? Date.now()) / 1000),
      data: result.images.map((image, i) => ({
        ...(format === "url"
          ? { url: imageRef(c, image.id)!.url }
          : { b64_json: service.store.readImagePng(image.id).toString("base64") }),
        revised_prompt: result.plans[i] ?? prompt,
      })),
    };
  };

  app.post("/v1/images/generations", limit(SMALL_BODY), async (c) => {
    const who = owner(c);
    const body = parseInput(OpenAIImageGeneration, await readJson(c));
    checkRequestedSize(body.size);
    const { id, done } = await service.startGeneration(who, "openai_generate", {
      prompt: body.prompt,
      n: body.n ?? 1,
      user: body.user,
    });
    cancelOnDisconnect(c, id);
    return c.json(openAiResponse(c, await done, body.response_format, body.prompt));
  });

  app.post("/v1/images/edits", limit(EDIT_BODY), async (c) => {
    const who = owner(c);
    const type = c.req.header("content-type") ?? "";
    if (!/^multipart\/form-data|^application\/x-www-form-urlencoded/i.test(type))
      throw new AtelierError("body: must be multipart/form-data (image, mask, prompt, …)", {
        status: 400,
        code: "invalid_content_type",
        param: "body",
      });
    let form: Record<string, unknown>;
    try {
      form = await c.req.parseBody({ all: true });
    } catch (error) {
      throw invalid("body", `not a readable form (${(error as Error).message})`);
    }
    // OpenAI clients send `image[]` for image arrays; this model edits one image.
    if (form["image[]"] !== undefined && form.image === undefined) {
      form.image = form["image[]"];
      delete form["image[]"];
    }
    for (const [key, value] of Object.entries(form))
      if (Array.isArray(value)) {
        if (key !== "image" || value.length > 1) throw invalid(key, "must be given once");
        form[key] = value[0];
      }
    const body = parseInput(OpenAIImageEdit, form);
    checkRequestedSize(body.size);
    const upload = decodeUpload(new Uint8Array(await body.image.arrayBuffer()), "image");
    checkSize(upload.image, "image");
    let mask: Mask | undefined;
    if (body.mask) {
      const source = decodeUpload(new Uint8Array(await body.mask.arrayBuffer()), "mask");
      if (source.alpha === null)
        throw invalid("mask", "must be a PNG whose transparent pixels mark the area to edit (got a JPEG)");
      mask = alphaMask(source, upload.image, "mask");
    } else if (hasTransparency(upload.alpha)) {
      // OpenAI's rule: without a mask, the image's own transparent pixels mark the area to edit.
      mask = alphaMask(upload, upload.image, "image");
    }
    const image = upload.alpha ? flattenAlpha(upload.image, upload.alpha) : upload.image;
    const imageId = service.saveUpload(who, null, image, "input");
    const maskId = mask ? service.saveMask(who, null, mask) : undefined;
    const { id, done } = await service.startGeneration(who, "openai_edit", {
      text: body.prompt,
      n: body.n ?? 1,
      user: body.user,
      image_id: imageId,
      mask_id: maskId,
    });
    cancelOnDisconnect(c, id);
    return c.json(openAiResponse(c, await done, body.response_format, body.prompt));
  });

  // Operations.

  app.get("/metrics", (c) =>
    c.body(service.metrics.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }),
  );
  const document = openApiDocument();
  app.get("/openapi.json", (c) => c.json(document));
  const page = docsPage(document);
  app.get("/docs", (c) => c.html(page));
}
