/**
 * The service core, independent of HTTP: generations as queued jobs with numbered, persisted events;
 * edit sessions; image ownership and signed image URLs; shutdown. Routes (routes.ts) translate requests
 * into these calls.
 *
 * Every job is a generation row; its payload in the queue is only its id. Edits of one session run one at
 * a time, in order, so each starts from the image the previous one made.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CancelledError } from "../../pipelines/denoise.ts";
import { type Mask, maskFromImage, type RgbImage } from "../../pipelines/image.ts";
import { AtelierError } from "../errors.ts";
import {
  type EditSettings,
  type Engine,
  type GenerateRequest,
  type GenerateResult,
  GenerationFailedError,
  type SessionState,
  type TraceRound,
} from "./engine.ts";
import { Metrics } from "./metrics.ts";
import { type JobQueue, MemoryQueue } from "./queue.ts";
import {
  type GenerationKind,
  type GenerationRow,
  type GenerationStatus,
  type MessageRow,
  newId,
  type SessionRow,
  Store,
  type StoredEvent,
} from "./store.ts";
import { maskToImage } from "./uploads.ts";

export interface ServiceOptions {
  dataDir: string;
  /** null when no model could be loaded: generation routes answer 503 with `engineProblem`. */
  engine: Engine | null;
  engineProblem?: string;
  concurrency?: number;
  /** Most jobs waiting behind the running ones. */
  capacity?: number;
  timeoutMs?: number;
  /** How long image URLs stay valid (default one hour, as OpenAI's). */
  urlTtlSeconds?: number;
}

type Payload = { generationId: string };
type Listener = (event: StoredEvent | null) => void;

interface Channel {
  nextSeq: number;
  events: StoredEvent[];
  listeners: Set<Listener>;
}

/** What an edit or OpenAI edit brings besides its text and settings: images already stored. */
export interface EditInputs {
  imageId?: string;
  maskId?: string;
}

export function notFound(what: string, id: string, param = "id"): AtelierError {
  return new AtelierError(`${param}: no ${what} ${JSON.stringify(id)}`, {
    status: 404,
    code: "not_found",
    param,
  });
}

function errorInfo(error: unknown): NonNullable<GenerationRow["error"]> {
  if (error instanceof AtelierError)
    return { message: error.message, code: error.code, status: error.status, param: error.param };
  return {
    message: `internal error: ${(error as Error)?.message ?? String(error)}`,
    code: "internal",
    status: 500,
    param: null,
  };
}

export class AtelierService {
  readonly store: Store;
  readonly metrics = new Metrics();
  readonly engine: Engine | null;
  readonly engineProblem: string | null;
  readonly queue: JobQueue<Payload, GenerationRow>;
  private readonly channels = new Map<string, Channel>();
  private readonly sessionTails = new Map<string, Promise<unknown>>();
  private readonly signingKey: Buffer;
  private readonly urlTtl: number;
  private closed = false;

  constructor(options: ServiceOptions) {
    this.store = new Store(options.dataDir);
    this.engine = options.engine;
    this.engineProblem = options.engine ? null : (options.engineProblem ?? "no image model is loaded");
    this.urlTtl = options.urlTtlSeconds ?? 3600;
    this.signingKey = loadSigningKey(this.store.dataDir);
    this.queue = new MemoryQueue((payload, job) => this.work(payload.generationId, job.signal), {
      concurrency: options.concurrency,
      capacity: options.capacity,
      timeoutMs: options.timeoutMs,
    });
    this.store.recoverInterrupted();
    const stats = () => this.queue.stats();
    this.metrics.gauge("atelier_queue_depth", "Jobs waiting in the queue.", () => stats().waiting);
    this.metrics.gauge("atelier_queue_running", "Jobs running.", () => stats().running);
    this.metrics.gauge("atelier_queue_capacity", "Most jobs that may wait.", () => stats().capacity);
    this.metrics.gauge("atelier_sse_subscribers", "Open event streams.", () =>
      [...this.channels.values()].reduce((n, c) => n + c.listeners.size, 0),
    );
  }

  // Generations.

  requireEngine(): Engine {
    if (!this.engine)
      throw new AtelierError(`no image model is loaded: ${this.engineProblem}`, {
        status: 503,
        code: "model_unavailable",
      });
    return this.engine;
  }

  /**
   * Stores a generation and queues it. Rejects with 429 when the queue is full (nothing is kept then).
   * `done` settles when the job has finished and its outcome is stored.
   */
  async startGeneration(
    owner: string,
    kind: GenerationKind,
    request: Record<string, unknown>,
    sessionId: string | null = null,
  ): Promise<{ id: string; done: Promise<GenerationRow> }> {
    this.requireEngine();
    if (this.closed)
      throw new AtelierError("the server is shutting down", { status: 503, code: "shutting_down" });
    const id = newId("gen");
    this.store.createGeneration({ id, owner, sessionId, kind, request });
    this.channels.set(id, { nextSeq: 1, events: [], listeners: new Set() });
    this.emit(id, "queued", { position: this.queue.stats().waiting });
    let done: Promise<GenerationRow>;
    try {
      ({ done } = await this.queue.submit(id, { generationId: id }));
    } catch (error) {
      this.channels.delete(id);
      this.store.deleteGeneration(id);
      if ((error as AtelierError).status === 429) this.metrics.rejected.inc();
      throw error;
    }
    // A job dropped before it ran (cancelled while waiting, shutdown) never reaches the worker.
    done.catch((error: unknown) => {
      if (this.store.getGeneration(id)?.status === "queued") this.fail(id, "cancelled", error, kind, 0);
    });
    const outcome = done.then(() => this.store.getGeneration(id)!);
    // Asynchronous generations never await this; their outcome is in storage and the event stream.
    outcome.catch(() => {});
    return { id, done: outcome };
  }

  /** The generation if `owner` may see it, else 404. */
  generation(owner: string, id: string): GenerationRow {
    const row = this.store.getGeneration(id);
    if (!row || row.owner !== owner) throw notFound("generation", id);
    return row;
  }

  /** Cancels a queued or running generation and waits (briefly) until it has stopped. */
  async cancel(owner: string, id: string): Promise<GenerationRow> {
    const row = this.generation(owner, id);
    if (row.status !== "queued" && row.status !== "running")
      throw new AtelierError(`id: generation ${id} has already ${row.status}`, {
        status: 409,
        code: "not_cancellable",
        param: "id",
      });
    const channel = this.channels.get(id);
    this.queue.cancel(id, "cancelled by request");
    if (channel) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10_000);
        const listener: Listener = (event) => {
          if (event === null) {
            clearTimeout(timer);
            resolve();
          }
        };
        if (!this.channels.has(id)) resolve();
        else channel.listeners.add(listener);
      });
    }
    return this.store.getGeneration(id)!;
  }

  /**
   * Past events after `afterSeq`, then live ones through `listener` (null = the stream ended). `live` is
   * false when the generation has already finished: the replay is everything.
   */
  subscribe(
    owner: string,
    id: string,
    afterSeq: number,
    listener: Listener,
  ): { replay: StoredEvent[]; live: boolean; unsubscribe: () => void } {
    this.generation(owner, id);
    const channel = this.channels.get(id);
    if (!channel) return { replay: this.store.events(id, afterSeq), live: false, unsubscribe: () => {} };
    channel.listeners.add(listener);
    return {
      replay: channel.events.filter((e) => e.seq > afterSeq),
      live: true,
      unsubscribe: () => channel.listeners.delete(listener),
    };
  }

  private emit(id: string, type: string, data: Record<string, unknown>): void {
    const channel = this.channels.get(id);
    if (!channel) return;
    const event = { seq: channel.nextSeq++, type, data: { type, ...data } };
    this.store.appendEvent(id, event.seq, type, event.data);
    channel.events.push(event);
    for (const listener of channel.listeners) listener(event);
  }

  private closeChannel(id: string): void {
    const channel = this.channels.get(id);
    if (!channel) return;
    this.channels.delete(id);
    for (const listener of channel.listeners) listener(null);
  }

  private work(id: string, signal: AbortSignal): Promise<GenerationRow> {
    const row = this.store.getGeneration(id)!;
    this.store.markRunning(id);
    if (!row.session_id) return this.run(row, signal);
    // One edit at a time per session, in submission order.
    const previous = this.sessionTails.get(row.session_id) ?? Promise.resolve();
    const current = previous.catch(() => {}).then(() => this.run(row, signal));
    this.sessionTails.set(row.session_id, current);
    const forget = () => {
      if (this.sessionTails.get(row.session_id!) === current) this.sessionTails.delete(row.session_id!);
    };
    current.then(forget, forget);
    return current;
  }

  private async run(row: GenerationRow, signal: AbortSignal): Promise<GenerationRow> {
    const started = performance.now();
    const engine = this.requireEngine();
    const context = {
      signal,
      id: row.id,
      onEvent: (event: { type: string }) => this.emit(row.id, event.type, { ...event }),
    };
    try {
      if (signal.aborted) throw new CancelledError(signal.reason);
      const request = row.request;
      let result: GenerateResult;
      if (row.kind === "generate" || row.kind === "openai_generate") {
        result = await engine.generate(request as GenerateRequest, context);
      } else {
        const state: SessionState =
          row.kind === "edit"
            ? this.sessionState(row.session_id!)
            : { history: [], image: null, seed: null, sampler: null, plan: null };
        const image =
          typeof request.image_id === "string" ? this.store.readImage(request.image_id) : undefined;
        const mask =
          typeof request.mask_id === "string"
            ? maskFromImage(this.store.readImage(request.mask_id))
            : undefined;
        result = await engine.edit(
          state,
          { text: request.text as string, image, mask },
          request as EditSettings,
          context,
        );
      }
      const summary = this.saveResult(row, result);
      this.emit(row.id, "done", { status: "succeeded", ...summary });
      this.metrics.jobs.inc({ kind: row.kind, status: "succeeded" });
      this.metrics.jobSeconds.observe((performance.now() - started) / 1000, { kind: row.kind });
      return this.store.getGeneration(row.id)!;
    } catch (error) {
      // An aborted signal says why the engine stopped: cancelled by request or shutdown, or timed out.
      const cause: unknown = signal.aborted ? signal.reason : error;
      const cancelled = cause instanceof AtelierError && cause.code === "cancelled";
      // A generation that failed part-way keeps the trace of the rounds it finished.
      const trace = cause instanceof GenerationFailedError ? this.saveTrace(row, cause.trace) : undefined;
      this.fail(
        row.id,
        cancelled ? "cancelled" : "failed",
        cause,
        row.kind,
        performance.now() - started,
        trace,
      );
      throw cause;
    } finally {
      this.closeChannel(row.id);
    }
  }

  private fail(
    id: string,
    status: GenerationStatus,
    error: unknown,
    kind: string,
    ms: number,
    trace?: unknown[],
  ): void {
    const info = errorInfo(error);
    this.store.finishGeneration(id, status, { error: info, trace });
    this.emit(id, "error", { status, error: info });
    this.closeChannel(id);
    this.metrics.jobs.inc({ kind, status });
    this.metrics.errors.inc({ code: info.code });
    if (ms > 0) this.metrics.jobSeconds.observe(ms / 1000, { kind });
  }

  /** Stores images (each once) and the outcome; an edit's two messages are added in the same transaction. */
  private saveResult(row: GenerationRow, result: GenerateResult): Record<string, unknown> {
    const ids = new Map<RgbImage, string>();
    const save = (image: RgbImage, role: "output" | "trace") => {
      let id = ids.get(image);
      if (!id) {
        id = this.store.saveImage(image, {
          owner: row.owner,
          generationId: row.id,
          sessionId: row.session_id,
          role,
        });
        ids.set(image, id);
      }
      return id;
    };
    const imageIds = result.images.map((image) => save(image, "output"));
    const trace = this.saveTrace(row, result.trace, save);
    const summary = {
      plans: result.plans,
      images: imageIds.map((id, i) => ({ id, seed: result.seeds[i]! })),
      seeds: result.seeds,
      timings: result.timings,
    };
    this.store.db.transaction(() => {
      this.store.finishGeneration(row.id, "succeeded", { result: summary, trace });
      if (row.kind === "edit") {
        const request = row.request;
        const last = trace.at(-1);
        this.store.appendMessages(row.session_id!, [
          {
            id: newId("msg"),
            role: "user",
            text: request.text as string,
            plan: null,
            image_id: (request.image_id as string | undefined) ?? null,
            mask_image_id: (request.mask_id as string | undefined) ?? null,
            generation_id: row.id,
            seed: null,
            sampler: null,
          },
          {
            id: newId("msg"),
            role: "assistant",
            text: last?.caption ?? result.plans[0] ?? "",
            plan: result.plans[0] ?? null,
            image_id: imageIds[0] ?? null,
            mask_image_id: null,
            generation_id: row.id,
            seed: result.seeds[0] ?? null,
            sampler: last?.settings.sampler ?? null,
          },
        ]);
      }
    })();
    return summary;
  }

  /** The trace as stored: each round's images saved (each once), referenced by id. */
  private saveTrace(
    row: GenerationRow,
    trace: TraceRound[],
    save: (image: RgbImage, role: "trace") => string = (image, role) =>
      this.store.saveImage(image, {
        owner: row.owner,
        generationId: row.id,
        sessionId: row.session_id,
        role,
      }),
  ): (Omit<TraceRound, "images"> & { images: string[] })[] {
    return trace.map((round) => ({ ...round, images: round.images.map((image) => save(image, "trace")) }));
  }

  // Sessions.

  createSession(owner: string, title: string | null): SessionRow {
    return this.store.createSession({ id: newId("sess"), owner, title });
  }

  session(owner: string, id: string, param = "id"): SessionRow {
    const row = this.store.getSession(id);
    if (!row || row.owner !== owner) throw notFound("session", id, param);
    return row;
  }

  messages(sessionId: string): MessageRow[] {
    return this.store.messages(sessionId);
  }

  private sessionState(sessionId: string): SessionState {
    const messages = this.store.messages(sessionId);
    const last = messages.findLast((m) => m.role === "assistant" && m.image_id);
    return {
      history: messages.map((m) => ({ role: m.role, text: m.text, plan: m.plan })),
      image: last ? this.store.readImage(last.image_id!) : null,
      seed: last?.seed ?? null,
      sampler: last?.sampler ?? null,
      plan: last?.plan ?? null,
    };
  }

  /** The session's current image (to check an uploaded mask against), if it has one. */
  currentImage(sessionId: string): RgbImage | null {
    const last = this.store.messages(sessionId).findLast((m) => m.role === "assistant" && m.image_id);
    return last ? this.store.readImage(last.image_id!) : null;
  }

  /** Cancels the session's jobs, then deletes it with everything it holds. */
  async deleteSession(owner: string, id: string): Promise<void> {
    this.session(owner, id);
    const active = this.store.db
      .prepare("SELECT id FROM generations WHERE session_id = ? AND status IN ('queued', 'running')")
      .all(id) as { id: string }[];
    for (const { id: generationId } of active) await this.cancel(owner, generationId).catch(() => {});
    await this.sessionTails.get(id)?.catch(() => {});
    this.store.deleteSession(id);
  }

  /** Stores an uploaded image or mask for a job (deleted with its session, if any). */
  saveUpload(owner: string, sessionId: string | null, image: RgbImage, role: "input" | "mask"): string {
    return this.store.saveImage(image, { owner, generationId: null, sessionId, role });
  }

  saveMask(owner: string, sessionId: string | null, mask: Mask): string {
    return this.saveUpload(owner, sessionId, maskToImage(mask), "mask");
  }

  // Images.

  /** Signs an image URL path so that it can be fetched without the bearer token until it expires. */
  signedImagePath(id: string): string {
    const expires = Math.floor(Date.now() / 1000) + this.urlTtl;
    return `/v1/images/${id}?expires=${expires}&sig=${this.sign(`${id}.${expires}`)}`;
  }

  private sign(text: string): string {
    return createHmac("sha256", this.signingKey).update(text).digest("base64url");
  }

  /** PNG bytes of an image the owner may see, or whose signed URL is valid; else 404. */
  imagePng(owner: string | null, id: string, signature?: { expires?: string; sig?: string }): Buffer {
    const row = this.store.getImage(id);
    const signed =
      signature?.sig && signature.expires && this.validSignature(id, signature.expires, signature.sig);
    if (!row || !(signed || (owner !== null && row.owner === owner))) throw notFound("image", id);
    return this.store.readImagePng(id);
  }

  private validSignature(id: string, expires: string, sig: string): boolean {
    if (!/^\d+$/.test(expires) || Number(expires) < Date.now() / 1000) return false;
    const expected = Buffer.from(this.sign(`${id}.${expires}`));
    const given = Buffer.from(sig);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  // Shutdown.

  /** Stops taking jobs, drops waiting ones, lets running ones finish for `graceMs` (then cancels them). */
  async drain(graceMs = 10_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.close(graceMs);
    await Promise.allSettled([...this.sessionTails.values()]);
    for (const id of [...this.channels.keys()]) this.closeChannel(id);
  }

  /** Drains, then releases the models and closes the database (after the HTTP server has stopped). */
  async close(graceMs = 10_000): Promise<void> {
    await this.drain(graceMs);
    if (!this.store.db.open) return;
    this.store.close();
    await this.engine?.dispose();
  }
}

/** A per-data-directory secret for image URL signatures, so URLs survive restarts. */
function loadSigningKey(dataDir: string): Buffer {
  const path = join(dataDir, "signing.key");
  if (existsSync(path)) return readFileSync(path);
  const key = randomBytes(32);
  writeFileSync(path, key, { mode: 0o600 });
  return key;
}
