/**
 * A small client of Atelier's agent API, used by the MCP server and the LangChain tools. It speaks HTTP to a
 * running service, or — built with `AtelierClient.inProcess(service)` — calls the same Hono application
 * in this process (no socket), so both paths share the routes' validation, storage and events.
 *
 * Every call follows its generation's event stream (progress for the caller), then reads the finished
 * generation: plans, seeds, image URLs and the trace of critique rounds.
 */

import { AtelierError } from "../errors.ts";
import { createApp } from "../server.ts";
import { ApiKeys } from "../service/auth.ts";
import type { GenerationRequest, SessionMessage } from "../service/schemas.ts";
import type { AtelierService } from "../service/service.ts";

export interface ClientOptions {
  /** Service root, e.g. http://127.0.0.1:8787 (in-process clients use a placeholder origin). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <key>` when the service has API keys. */
  apiKey?: string;
  /** Extra headers on every request (e.g. a forwarded Authorization header). */
  headers?: Record<string, string>;
  fetch?: (request: Request) => Promise<Response>;
  /** Whether the image URLs it hands out can be fetched by others (false for in-process clients). */
  reachable?: boolean;
}

/** An event of a generation as the service streams it (`type` is the SSE event name). */
export interface ProgressEvent {
  type: string;
  round?: number;
  step?: number;
  steps?: number;
  plan?: string;
  caption?: string;
  agreement?: number;
  critique?: string;
  [key: string]: unknown;
}

export interface CallOptions {
  onEvent?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
}

/** One critique round of a finished generation. */
export interface RoundSummary {
  round: number;
  plan: string | null;
  caption: string | null;
  mode: string;
  seeds: number[];
  settings: Record<string, unknown>;
  /** null when the engine has no critic. */
  agreement: number | null;
  critique: string | null;
  image_urls: string[];
}

export interface ImageOutcome {
  generation_id: string;
  /** The session the image belongs to (edits continue it); null for plain generations. */
  session_id: string | null;
  plan: string | null;
  /** The plan's scene in words. */
  caption: string | null;
  seed: number;
  images: { id: string; url: string; seed: number }[];
  trace: RoundSummary[];
  timings: Record<string, number>;
}

interface GenerationBody {
  id: string;
  status: string;
  session_id: string | null;
  plans: (string | null)[];
  images: { id: string; url: string; seed: number }[];
  trace: {
    round: number;
    plan: string | null;
    caption?: string;
    mode: string;
    seeds: number[];
    settings: Record<string, unknown>;
    critique?: { agreement: number; text: string } | null;
    images: ({ id: string; url: string } | null)[];
  }[];
  timings: Record<string, number>;
  error: { message: string; code: string | null; param: string | null } | null;
}

/** An OpenAI-style error body (or anything else) as an AtelierError with the response's status. */
async function responseError(response: Response): Promise<AtelierError> {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text) as { error: { message: string; code: string; param: string | null } };
    return new AtelierError(error.message, { status: response.status, code: error.code, param: error.param });
  } catch {
    return new AtelierError(`HTTP ${response.status}: ${text.slice(0, 200)}`, { status: response.status });
  }
}

/** Server-sent events of a response body, one parsed `{event, data}` at a time. */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ProgressEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        let type = "message";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length > 0) yield { ...(JSON.parse(data.join("\n")) as object), type };
      }
    }
  } finally {
    reader.releaseLock();
  }
}

export class AtelierClient {
  readonly reachable: boolean;
  private readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly send: (request: Request) => Promise<Response>;

  constructor(options: ClientOptions) {
    this.base = options.baseUrl.replace(/\/$/, "");
    this.headers = {
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
      ...options.headers,
    };
    this.send = options.fetch ?? ((request) => fetch(request));
    this.reachable = options.reachable ?? true;
  }

  /**
   * A client of a service in this process: requests go straight to the service's Hono application.
   * Without `keys` (and `apiKey`) everything belongs to the service's anonymous owner.
   */
  static inProcess(
    service: AtelierService,
    options: { keys?: ApiKeys; apiKey?: string; baseUrl?: string } = {},
  ): AtelierClient {
    const app = createApp({ models: () => ({}), service, keys: options.keys ?? new ApiKeys([]) });
    return new AtelierClient({
      baseUrl: options.baseUrl ?? "http://atelier.local",
      apiKey: options.apiKey,
      fetch: async (request) => app.fetch(request),
      reachable: options.baseUrl !== undefined,
    });
  }

  /** A URL this client hands out, as an absolute URL of its service. */
  url(path: string): string {
    return new URL(path, `${this.base}/`).toString();
  }

  private async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(this.headers)) headers.set(name, value);
    if (init.body !== undefined) headers.set("content-type", "application/json");
    const response = await this.send(new Request(`${this.base}${path}`, { ...init, headers }));
    if (!response.ok) throw await responseError(response);
    return response;
  }

  private async json<T>(path: string, init?: RequestInit): Promise<T> {
    return (await (await this.request(path, init)).json()) as T;
  }

  /** A generation from a prompt or a plan (POST /v1/generations), followed until it has finished. */
  async generate(body: GenerationRequest, options: CallOptions = {}): Promise<ImageOutcome> {
    const created = await this.json<{ id: string }>("/v1/generations", {
      method: "POST",
      body: JSON.stringify(body),
      signal: options.signal,
    });
    return this.follow(created.id, options);
  }

  async createSession(title?: string): Promise<string> {
    const body = title === undefined ? {} : { title };
    return (await this.json<{ id: string }>("/v1/sessions", { method: "POST", body: JSON.stringify(body) }))
      .id;
  }

  /** Sends a session message (the first makes the image, later ones edit it) and follows its generation. */
  async message(sessionId: string, body: SessionMessage, options: CallOptions = {}): Promise<ImageOutcome> {
    const created = await this.json<{ id: string }>(
      `/v1/sessions/${encodeURIComponent(sessionId)}/messages`,
      {
        method: "POST",
        body: JSON.stringify(body),
        headers: { prefer: "respond-async" },
        signal: options.signal,
      },
    );
    return this.follow(created.id, options);
  }

  /** The session's current image URL, if it has one. */
  async currentImageUrl(sessionId: string): Promise<string | null> {
    const session = await this.json<{ messages: { role: string; image: { url: string } | null }[] }>(
      `/v1/sessions/${encodeURIComponent(sessionId)}`,
    );
    return session.messages.findLast((m) => m.role === "assistant" && m.image)?.image?.url ?? null;
  }

  /** PNG bytes of an image URL the service handed out. */
  async imagePng(url: string): Promise<Uint8Array> {
    const { pathname, search } = new URL(url, `${this.base}/`);
    const path = url.startsWith(this.base) ? url.slice(this.base.length) : pathname + search;
    return new Uint8Array(await (await this.request(path)).arrayBuffer());
  }

  /** Follows a generation's events to its end (cancelling it if `signal` aborts) and reads the outcome. */
  async follow(id: string, options: CallOptions = {}): Promise<ImageOutcome> {
    const path = `/v1/generations/${encodeURIComponent(id)}`;
    const cancel = () => {
      this.request(`${path}/cancel`, { method: "POST" }).catch(() => {});
    };
    options.signal?.addEventListener("abort", cancel, { once: true });
    try {
      const response = await this.request(`${path}/events`, { signal: options.signal });
      for await (const event of sseEvents(response.body!)) {
        options.onEvent?.(event);
        if (event.type === "done" || event.type === "error") break;
      }
      const generation = await this.json<GenerationBody>(path);
      if (generation.status !== "succeeded") {
        const error = generation.error;
        throw new AtelierError(error?.message ?? `generation ${id} ${generation.status}`, {
          status: generation.status === "cancelled" ? 499 : 500,
          code: error?.code ?? generation.status,
          param: error?.param ?? null,
        });
      }
      return outcome(generation);
    } finally {
      options.signal?.removeEventListener("abort", cancel);
    }
  }
}

function outcome(g: GenerationBody): ImageOutcome {
  // The image returned is the best round's, not necessarily the last one's.
  const first = g.images[0]?.id;
  const best = g.trace.find((r) => r.images.some((image) => image?.id === first)) ?? g.trace.at(-1);
  return {
    generation_id: g.id,
    session_id: g.session_id,
    plan: g.plans[0] ?? null,
    caption: best?.caption ?? null,
    seed: g.images[0]?.seed ?? 0,
    images: g.images.map(({ id, url, seed }) => ({ id, url, seed })),
    trace: g.trace.map((r) => ({
      round: r.round,
      plan: r.plan,
      caption: r.caption ?? null,
      mode: r.mode,
      seeds: r.seeds,
      settings: r.settings,
      agreement: r.critique?.agreement ?? null,
      critique: r.critique?.text ?? null,
      image_urls: r.images.flatMap((image) => (image ? [image.url] : [])),
    })),
    timings: g.timings,
  };
}
