/**
 * The in-memory job queue with real async workers (bounded concurrency and length, Retry-After, timeout,
 * cancel, shutdown), and the per-job timeout through the whole service.
 */
import { describe, expect, it } from "vitest";
import { AtelierError } from "../src/errors.ts";
import { JobCancelled, JobTimeout, MemoryQueue } from "../src/service/queue.ts";
import { getJson, json, startTestServer } from "./service-harness.ts";

/** A worker that runs until released or aborted, recording how many run at once. */
function gatedWorker() {
  const gates = new Map<string, () => void>();
  let active = 0;
  let peak = 0;
  const worker = (payload: string, job: { signal: AbortSignal }) =>
    new Promise<string>((resolve, reject) => {
      active++;
      peak = Math.max(peak, active);
      const finish = (fn: () => void) => {
        active--;
        gates.delete(payload);
        fn();
      };
      gates.set(payload, () => finish(() => resolve(payload)));
      job.signal.addEventListener("abort", () => finish(() => reject(job.signal.reason)));
    });
  return { worker, gates, peak: () => peak };
}

const settle = () => new Promise((r) => setTimeout(r, 5));

describe("MemoryQueue", () => {
  it("runs at most `concurrency` jobs, queues `capacity` more, refuses the rest with 429", async () => {
    const { worker, gates, peak } = gatedWorker();
    const queue = new MemoryQueue(worker, { concurrency: 2, capacity: 3 });
    const accepted = await Promise.all(["a", "b", "c", "d", "e"].map((id) => queue.submit(id, id)));
    expect(queue.stats()).toEqual({ waiting: 3, running: 2, capacity: 3, concurrency: 2 });
    const refused = await queue.submit("f", "f").then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(AtelierError);
    expect(refused).toMatchObject({ status: 429, code: "queue_full" });
    expect((refused as { retryAfter: number }).retryAfter).toBeGreaterThanOrEqual(1);
    for (const id of ["a", "b", "c", "d", "e"]) {
      await settle();
      gates.get(id)!();
    }
    expect(await Promise.all(accepted.map((a) => a.done))).toEqual(["a", "b", "c", "d", "e"]);
    expect(peak()).toBe(2);
    expect(queue.stats()).toMatchObject({ waiting: 0, running: 0 });
  });

  it("cancels waiting and running jobs, and times out long ones", async () => {
    const { worker, gates } = gatedWorker();
    const queue = new MemoryQueue(worker, { concurrency: 1, capacity: 4, timeoutMs: 60 });
    const running = await queue.submit("run", "run");
    const waiting = await queue.submit("wait", "wait");
    expect(queue.cancel("wait")).toBe(true);
    await expect(waiting.done).rejects.toBeInstanceOf(JobCancelled);
    expect(queue.cancel("run", "stop")).toBe(true);
    await expect(running.done).rejects.toMatchObject({ code: "cancelled", message: "stop" });
    expect(queue.cancel("nope")).toBe(false);

    const slow = await queue.submit("slow", "slow");
    await expect(slow.done).rejects.toBeInstanceOf(JobTimeout);
    expect(gates.size).toBe(0);
  });

  it("close drops waiting jobs, gives running ones the grace period, then aborts them, and refuses new ones", async () => {
    const { worker, gates } = gatedWorker();
    const queue = new MemoryQueue(worker, { concurrency: 1, capacity: 4 });
    const finishing = await queue.submit("a", "a");
    const dropped = await queue.submit("b", "b");
    setTimeout(() => gates.get("a")!(), 20);
    await queue.close(1000);
    expect(await finishing.done).toBe("a");
    await expect(dropped.done).rejects.toBeInstanceOf(JobCancelled);
    await expect(queue.submit("c", "c")).rejects.toMatchObject({ status: 503 });

    const other = new MemoryQueue(gatedWorker().worker, { concurrency: 1 });
    const stuck = await other.submit("x", "x");
    await other.close(10);
    await expect(stuck.done).rejects.toBeInstanceOf(JobCancelled);
  });
});

describe("per-job timeout in the service", () => {
  it("fails a generation that runs too long with code timeout", async () => {
    const server = await startTestServer({ ATELIER_JOB_TIMEOUT_MS: "150" });
    try {
      const created = await getJson(
        `${server.url}/v1/generations`,
        json({ prompt: "a star", steps: 100, preview: true }),
      );
      let record = await getJson(`${server.url}/v1/generations/${created.body.id}`);
      for (let i = 0; i < 200 && ["queued", "running"].includes(record.body.status); i++) {
        await new Promise((r) => setTimeout(r, 25));
        record = await getJson(`${server.url}/v1/generations/${created.body.id}`);
      }
      expect(record.body).toMatchObject({ status: "failed", error: { code: "timeout", status: 504 } });
    } finally {
      await server.close();
    }
  });
});
