/**
 * The job queue. Jobs are named by id and carry a serialisable payload (the generation's id: everything
 * else is in storage), and one worker function runs them, so a Redis-backed queue with workers on other
 * machines can implement the same interface: `submit` pushes the payload, workers run the same function,
 * `cancel` publishes the id.
 *
 * The in-memory queue: bounded concurrency, a bounded number of waiting jobs (a full queue refuses with
 * 429 and an estimate for Retry-After), a per-job timeout and cancellation, both through the job's
 * AbortSignal.
 */
import { AtelierError } from "../errors.ts";

export interface QueueStats {
  waiting: number;
  running: number;
  /** Most jobs that may wait. */
  capacity: number;
  concurrency: number;
}

export interface JobContext {
  id: string;
  signal: AbortSignal;
}

export type Worker<P, R> = (payload: P, job: JobContext) => Promise<R>;

export interface JobQueue<P, R> {
  /**
   * Accepts a job, or rejects with a 429 AtelierError (queue full) or 503 (closing). The returned `done`
   * settles with the worker's outcome.
   */
  submit(id: string, payload: P): Promise<{ done: Promise<R> }>;
  /** Cancels a waiting or running job; false when the queue does not hold it. */
  cancel(id: string, reason?: string): boolean;
  stats(): QueueStats;
  /** Seconds after which a refused client may expect room. */
  retryAfter(): number;
  /** Refuses new jobs, drops waiting ones, gives running ones `graceMs` to finish, then aborts them. */
  close(graceMs: number): Promise<void>;
}

/** Abort reasons: a timeout is a failure, a cancel is the caller's choice; the service reports them apart. */
export class JobTimeout extends AtelierError {
  constructor(ms: number) {
    super(`the job ran longer than its limit of ${ms} ms`, { status: 504, code: "timeout" });
  }
}

export class JobCancelled extends AtelierError {
  constructor(reason: string) {
    super(reason, { status: 409, code: "cancelled" });
  }
}

export function queueFull(retryAfter: number): AtelierError {
  const error = new AtelierError(`the job queue is full; retry in ${retryAfter} s`, {
    status: 429,
    code: "queue_full",
  });
  (error as AtelierError & { retryAfter?: number }).retryAfter = retryAfter;
  return error;
}

interface Entry<P, R> {
  id: string;
  payload: P;
  controller: AbortController;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
  done: Promise<R>;
}

export interface MemoryQueueOptions {
  concurrency?: number;
  capacity?: number;
  timeoutMs?: number;
}

export class MemoryQueue<P, R> implements JobQueue<P, R> {
  private readonly waiting: Entry<P, R>[] = [];
  private readonly running = new Map<string, Entry<P, R>>();
  private readonly concurrency: number;
  private readonly capacity: number;
  private readonly timeoutMs: number;
  /** Recent job durations (ms) for the Retry-After estimate. */
  private readonly recent: number[] = [];
  private closing = false;

  constructor(
    private readonly worker: Worker<P, R>,
    options: MemoryQueueOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 1;
    this.capacity = options.capacity ?? 32;
    this.timeoutMs = options.timeoutMs ?? 300_000;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1)
      throw new RangeError(`concurrency must be a positive integer, got ${this.concurrency}`);
    if (!Number.isInteger(this.capacity) || this.capacity < 0)
      throw new RangeError(`capacity must be a non-negative integer, got ${this.capacity}`);
  }

  async submit(id: string, payload: P): Promise<{ done: Promise<R> }> {
    if (this.closing)
      throw new AtelierError("the server is shutting down", { status: 503, code: "shutting_down" });
    if (this.running.size >= this.concurrency && this.waiting.length >= this.capacity)
      throw queueFull(this.retryAfter());
    let resolve!: (value: R) => void;
    let reject!: (error: unknown) => void;
    const done = new Promise<R>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Callers may drop `done` (fire-and-forget generations); their outcome is recorded by the worker.
    done.catch(() => {});
    this.waiting.push({ id, payload, controller: new AbortController(), resolve, reject, done });
    this.pump();
    return { done };
  }

  cancel(id: string, reason = "cancelled by request"): boolean {
    const index = this.waiting.findIndex((e) => e.id === id);
    if (index >= 0) {
      const [entry] = this.waiting.splice(index, 1);
      entry!.reject(new JobCancelled(reason));
      return true;
    }
    const entry = this.running.get(id);
    if (!entry) return false;
    entry.controller.abort(new JobCancelled(reason));
    return true;
  }

  stats(): QueueStats {
    return {
      waiting: this.waiting.length,
      running: this.running.size,
      capacity: this.capacity,
      concurrency: this.concurrency,
    };
  }

  retryAfter(): number {
    const mean = this.recent.length ? this.recent.reduce((a, b) => a + b, 0) / this.recent.length : 1000;
    const rounds = Math.ceil((this.waiting.length + 1) / this.concurrency);
    return Math.max(1, Math.ceil((mean * rounds) / 1000));
  }

  async close(graceMs: number): Promise<void> {
    this.closing = true;
    for (const entry of this.waiting.splice(0)) entry.reject(new JobCancelled("the server is shutting down"));
    const running = [...this.running.values()];
    const settled = Promise.allSettled(running.map((e) => e.done));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<"late">((res) => {
      timer = setTimeout(() => res("late"), graceMs);
    });
    if ((await Promise.race([settled, grace])) === "late") {
      for (const entry of running) entry.controller.abort(new JobCancelled("the server is shutting down"));
      await settled;
    }
    clearTimeout(timer);
  }

  private pump(): void {
    while (this.running.size < this.concurrency && this.waiting.length > 0) {
      const entry = this.waiting.shift()!;
      this.running.set(entry.id, entry);
      void this.execute(entry);
    }
  }

  private async execute(entry: Entry<P, R>): Promise<void> {
    const started = performance.now();
    const timer = setTimeout(() => entry.controller.abort(new JobTimeout(this.timeoutMs)), this.timeoutMs);
    try {
      entry.resolve(await this.worker(entry.payload, { id: entry.id, signal: entry.controller.signal }));
    } catch (error) {
      entry.reject(error);
    } finally {
      clearTimeout(timer);
      this.running.delete(entry.id);
      this.recent.push(performance.now() - started);
      if (this.recent.length > 20) this.recent.shift();
      this.pump();
    }
  }
}
