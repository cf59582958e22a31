/**
 * 50 concurrent requests against a queue of 8 (one job at a time): each ends in success or 429 with
 * Retry-After, none is lost or hangs, the queue drains, and the heap returns to its idle level.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getJson, json, readEvents, startTestServer } from "./service-harness.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let server: Awaited<ReturnType<typeof startTestServer>>;

beforeAll(async () => {
  server = await startTestServer({ ATELIER_QUEUE: "8", ATELIER_CONCURRENCY: "1" });
});

afterAll(async () => {
  await server?.close();
});

function heapAfterGc(): number {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

type Outcome = { kind: "sync" | "async"; status: number; retryAfter: string | null; done?: string };

async function one(base: string, i: number): Promise<Outcome> {
  const signal = AbortSignal.timeout(60_000);
  if (i % 2 === 0) {
    const response = await fetch(`${base}/v1/images/generations`, {
      ...json({ prompt: `a red star number ${i}` }),
      signal,
    });
    const body = (await response.json()) as { data?: unknown[]; error?: { code: string } };
    if (response.status === 200) expect(body.data).toHaveLength(1);
    else expect(body.error?.code).toBe("queue_full");
    return { kind: "sync", status: response.status, retryAfter: response.headers.get("retry-after") };
  }
  const response = await fetch(`${base}/v1/generations`, {
    ...json({ prompt: `a blue circle ${i}`, steps: 4 }),
    signal,
  });
  const body = (await response.json()) as { id?: string; error?: { code: string } };
  if (response.status !== 202) {
    expect(body.error?.code).toBe("queue_full");
    return { kind: "async", status: response.status, retryAfter: response.headers.get("retry-after") };
  }
  const events = await readEvents(`${base}/v1/generations/${body.id}/events`, { timeoutMs: 60_000 });
  return { kind: "async", status: 202, retryAfter: null, done: events.at(-1)?.event };
}

describe("load", () => {
  it("answers 50 concurrent requests with success or 429, losing none", async () => {
    const base = server.url;
    // Warm up: the first job allocates the models' buffers, which stay for the server's life.
    expect((await getJson(`${base}/v1/images/generations`, json({ prompt: "warm up" }))).status).toBe(200);
    const idle = heapAfterGc();

    const outcomes = await Promise.all(Array.from({ length: 50 }, (_, i) => one(base, i)));
    const accepted = outcomes.filter((o) => o.status === 200 || o.status === 202);
    const refused = outcomes.filter((o) => o.status === 429);
    expect(accepted.length + refused.length).toBe(50);
    expect(refused.length).toBeGreaterThan(0);
    // A refusal means 1 job was running and 8 waiting, all of which were accepted.
    expect(accepted.length).toBeGreaterThanOrEqual(9);
    for (const o of refused) expect(Number(o.retryAfter)).toBeGreaterThanOrEqual(1);
    for (const o of accepted.filter((a) => a.kind === "async")) expect(o.done).toBe("done");

    const health = await getJson(`${base}/health`);
    expect(health.body.queue).toMatchObject({ waiting: 0, running: 0, capacity: 8 });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain(`atelier_queue_rejected_total ${refused.length}`);
    expect(metrics).toMatch(/^atelier_sse_subscribers 0$/m);

    const grown = heapAfterGc() - idle;
    expect(grown, `heap grew by ${(grown / 1048576).toFixed(1)} MB`).toBeLessThan(8 * 1048576);
  });
});
