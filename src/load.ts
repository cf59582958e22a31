/**
 * A loopback load generator for `POST /v1/images/generations` (the OpenAI-compatible route): a bounded
 * number of requests from a bounded number of concurrent clients, stopped by a time limit too. Reports
 * throughput, p50/p95 latency of successful requests, the share answered 429 (queue full) and errors
 * (anything else: must be 0). Only loopback addresses are accepted as targets.
 */
import { invalid } from "./errors.ts";

export interface LoadOptions {
  url: string;
  requests: number;
  concurrency: number;
  /** Stop sending new requests after this many seconds. */
  seconds: number;
  apiKey?: string;
  prompt: string;
}

export interface LoadReport {
  sent: number;
  ok: number;
  rejected429: number;
  errors: number;
  /** Requests never answered (must be 0). */
  lost: number;
  seconds: number;
  throughput: number;
  latencyMs: { p50: number; p95: number };
  share429: number;
  errorSamples: string[];
}

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/;

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const target = new URL("/v1/images/generations", options.url);
  if (!LOOPBACK.test(target.hostname)) throw invalid("url", "load tests only target loopback addresses");
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  const latencies: number[] = [];
  const report = { sent: 0, ok: 0, rejected429: 0, errors: 0, lost: 0, errorSamples: [] as string[] };
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;

  async function client(): Promise<void> {
    while (report.sent < options.requests && performance.now() < deadline) {
      const index = report.sent++;
      const begin = performance.now();
      try {
        const response = await fetch(target, {
          method: "POST",
          headers,
          body: JSON.stringify({ prompt: `${options.prompt} ${index}`, size: "64x64" }),
          signal: AbortSignal.timeout(Math.round(Math.max(1000, deadline - begin + 60_000))),
        });
        const body = (await response.json()) as { data?: unknown[]; error?: { message: string } };
        if (response.status === 200 && body.data?.length === 1) {
          report.ok++;
          latencies.push(performance.now() - begin);
        } else if (response.status === 429) {
          report.rejected429++;
        } else {
          report.errors++;
          if (report.errorSamples.length < 5)
            report.errorSamples.push(`${response.status} ${body.error?.message}`);
        }
      } catch (error) {
        report.lost++;
        if (report.errorSamples.length < 5) report.errorSamples.push((error as Error).message);
      }
    }
  }

  await Promise.all(Array.from({ length: options.concurrency }, client));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    ...report,
    seconds,
    throughput: report.ok / seconds,
    latencyMs: { p50: at(0.5), p95: at(0.95) },
    share429: report.sent ? report.rejected429 / report.sent : 0,
  };
}

export function loadText(r: LoadReport): string {
  return [
    `sent ${r.sent} in ${r.seconds.toFixed(1)} s: ok ${r.ok}, 429 ${r.rejected429} (${(100 * r.share429).toFixed(1)} %), errors ${r.errors}, lost ${r.lost}`,
    `throughput ${r.throughput.toFixed(2)} images/s; latency of successes p50 ${r.latencyMs.p50.toFixed(0)} ms, p95 ${r.latencyMs.p95.toFixed(0)} ms`,
    ...r.errorSamples.map((s) => `  error: ${s}`),
  ].join("\n");
}
