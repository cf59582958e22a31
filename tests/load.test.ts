import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLoad } from "../src/load.ts";
import { startTestServer } from "./service-harness.ts";

let server: Awaited<ReturnType<typeof startTestServer>>;

beforeAll(async () => {
  server = await startTestServer({ ATELIER_QUEUE: "2", ATELIER_CONCURRENCY: "1" });
});

afterAll(async () => {
  await server?.close();
});

describe("atelier bench --load", () => {
  it("sends a bounded load and accounts for every request: successes, 429s, no errors, none lost", async () => {
    const report = await runLoad({
      url: server.url,
      requests: 12,
      concurrency: 6,
      seconds: 60,
      prompt: "a red star",
    });
    expect(report.sent).toBe(12);
    expect(report.ok + report.rejected429 + report.errors + report.lost).toBe(12);
    expect(report.errors).toBe(0);
    expect(report.lost).toBe(0);
    expect(report.ok).toBeGreaterThan(0);
    expect(report.rejected429).toBeGreaterThan(0); // 6 clients against a queue of 2
    expect(report.latencyMs.p95).toBeGreaterThanOrEqual(report.latencyMs.p50);
  });

  it("refuses targets other than loopback", async () => {
    await expect(
      runLoad({ url: "http://10.0.0.1:8787", requests: 1, concurrency: 1, seconds: 1, prompt: "x" }),
    ).rejects.toThrow(/^url: load tests only target loopback/);
  });
});
