/**
 * Shared by the service tests: a models folder over the tiny fixtures, the real server (in this process
 * on a free loopback port, or as an `atelier serve` child process), an SSE client and PNG helpers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PNG } from "pngjs";
import { createImage, decodePng, encodePng, type RgbImage } from "../pipelines/image.ts";
import { configFromEnv, type RunningServer, startServer } from "../src/service/start.ts";

/**
 * A models root over the committed tiny fixtures, as ATELIER_MODELS expects it: ldm/, planner/ and, unless
 * left out (the caption path through the text encoder), projection/.
 */
export function fixtureModels(projection = true): string {
  const root = mkdtempSync(join(tmpdir(), "atelier-models-"));
  symlinkSync(resolve("tests/fixtures/tiny-ldm"), join(root, "ldm"));
  symlinkSync(resolve("tests/fixtures/tiny-planner"), join(root, "planner"));
  if (projection) symlinkSync(resolve("tests/fixtures/tiny-projection"), join(root, "projection"));
  return root;
}

export function tempDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "atelier-data-"));
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export async function startTestServer(
  env: Record<string, string> = {},
  options: { projection?: boolean } = {},
): Promise<RunningServer & { dataDir: string; models: string }> {
  const models = fixtureModels(options.projection ?? true);
  const dataDir = env.ATELIER_DATA ?? tempDataDir();
  const config = configFromEnv({
    PORT: "0",
    ATELIER_MODELS: models,
    ATELIER_DATA: dataDir,
    ATELIER_THREADS: "1",
    ...env,
  });
  const server = await startServer(config);
  return {
    ...server,
    dataDir,
    models,
    close: async () => {
      await server.close();
      removeDir(models);
    },
  };
}

/** `atelier serve` as a child process; resolves once it listens. */
export async function spawnServer(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ["bin/atelier.js", "serve", "--port", "0"], {
    env: { ...process.env, ATELIER_THREADS: "1", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let output = "";
  child.stdout!.setEncoding("utf8");
  while (!/listening on (\S+)/.test(output)) {
    const [chunk] = (await Promise.race([once(child.stdout!, "data"), once(child, "exit")])) as [string];
    if (child.exitCode !== null) throw new Error(`atelier serve exited with ${child.exitCode}: ${output}`);
    output += chunk;
  }
  return { child, url: /listening on (\S+)/.exec(output)![1]! };
}

export async function stopProcess(
  child: ChildProcess,
  signal: NodeJS.Signals = "SIGTERM",
): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  child.kill(signal);
  const [code] = (await once(child, "exit")) as [number | null];
  return code;
}

export interface SseEvent {
  event: string;
  id: string | null;
  data: Record<string, unknown>;
}

/**
 * Reads a server-sent event stream until the server ends it; `onEvent` sees each event as it arrives.
 * Rejects if the stream stays open longer than `timeoutMs`.
 */
export async function readEvents(
  url: string,
  options: { headers?: Record<string, string>; onEvent?: (e: SseEvent) => void; timeoutMs?: number } = {},
): Promise<SseEvent[]> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error("event stream did not end")),
    options.timeoutMs ?? 20_000,
  );
  try {
    const response = await fetch(url, { headers: options.headers, signal: controller.signal });
    if (response.status !== 200) throw new Error(`events: HTTP ${response.status} ${await response.text()}`);
    if (!response.headers.get("content-type")?.startsWith("text/event-stream"))
      throw new Error(`events: content-type ${response.headers.get("content-type")}`);
    const events: SseEvent[] = [];
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of response.body!) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        let event = "message";
        let id: string | null = null;
        const data: string[] = [];
        for (const line of block.split("\n")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = value;
          else if (field === "id") id = value;
          else if (field === "data") data.push(value);
        }
        if (data.length === 0) continue;
        const parsed = { event, id, data: JSON.parse(data.join("\n")) };
        events.push(parsed);
        options.onEvent?.(parsed);
      }
    }
    return events;
  } finally {
    clearTimeout(timer);
  }
}

export const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body),
});

/** A 64×64 test picture: a white canvas with a red square; `alpha` optionally cut out. */
export function testImage(size = 64): RgbImage {
  const image = createImage(size, size);
  image.data.fill(245);
  for (let y = 20; y < 44; y++)
    for (let x = 20; x < 44; x++) image.data.set([220, 40, 40], (y * size + x) * 3);
  return image;
}

/** An RGBA PNG: transparent inside the rectangle [x0, x1) × [y0, y1), opaque elsewhere. */
export function rgbaPng(image: RgbImage, hole: [number, number, number, number] | null): Buffer {
  const png = new PNG({ width: image.width, height: image.height, colorType: 6 });
  for (let i = 0; i < image.width * image.height; i++) {
    const x = i % image.width;
    const y = Math.floor(i / image.width);
    const inside = hole !== null && x >= hole[0] && x < hole[2] && y >= hole[1] && y < hole[3];
    png.data[i * 4] = image.data[i * 3]!;
    png.data[i * 4 + 1] = image.data[i * 3 + 1]!;
    png.data[i * 4 + 2] = image.data[i * 3 + 2]!;
    png.data[i * 4 + 3] = inside ? 0 : 255;
  }
  return PNG.sync.write(png, { colorType: 6 });
}

export const png = (image: RgbImage) => encodePng(image);

export function decode(bytes: Uint8Array): RgbImage {
  return decodePng(bytes).image;
}

/** Pixels (indexes) that differ between two images of the same size. */
export function changedPixels(a: RgbImage, b: RgbImage): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.width * a.height; i++)
    if (
      a.data[i * 3] !== b.data[i * 3] ||
      a.data[i * 3 + 1] !== b.data[i * 3 + 1] ||
      a.data[i * 3 + 2] !== b.data[i * 3 + 2]
    )
      out.push(i);
  return out;
}

/** A parsed JSON response: its shape is what the assertions check. */
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field by the tests
export type Json = any;

export async function getJson(url: string, init?: RequestInit): Promise<{ status: number; body: Json }> {
  const response = await fetch(url, init);
  return { status: response.status, body: await response.json() };
}
