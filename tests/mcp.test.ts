/**
 * The MCP server with the official MCP TypeScript client: `atelier mcp` spawned over stdio, and `/mcp` of the
 * running service over Streamable HTTP (with API keys). The tools run for real on the tiny fixture models.
 */
import { existsSync, symlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeBase64Png } from "../pipelines/image.ts";
import {
  changedPixels,
  fixtureModels,
  type Json,
  removeDir,
  rgbaPng,
  startTestServer,
} from "./service-harness.ts";

type Progress = { progress: number; total?: number; message?: string };

function images(result: CallToolResult) {
  return result.content
    .filter((c) => c.type === "image")
    .map((c) => {
      expect(c.mimeType).toBe("image/png");
      return decodeBase64Png(c.data).image;
    });
}

async function call(client: Client, name: string, args: Record<string, unknown>, progress?: Progress[]) {
  const result = (await client.callTool(
    { name, arguments: args },
    undefined,
    progress ? { onprogress: (p) => progress.push(p) } : undefined,
  )) as CallToolResult;
  return { result, data: result.structuredContent as Json };
}

/** Generate, then edit inside a mask: what both transports must do. */
async function generateAndEdit(client: Client) {
  const progress: Progress[] = [];
  const generated = await call(
    client,
    "generate_image",
    { prompt: "a pink square on a white background", seed: 4242, steps: 3 },
    progress,
  );
  expect(generated.result.isError).toBeFalsy();
  const [first] = images(generated.result);
  expect([first!.width, first!.height]).toEqual([64, 64]);
  expect(generated.data.seed).toBe(4242);
  expect(generated.data.plan).toMatch(/^<IMG_BEGIN> .* <IMG_END>$/);
  expect(generated.data.session_id).toMatch(/^sess_/);
  expect(generated.data.rounds).toHaveLength(1);
  expect(generated.data.rounds[0]).toMatchObject({ round: 1, mode: "txt2img", seeds: [4242] });
  // One notification per denoising step, increasing, with the step in words.
  expect(progress.map((p) => p.progress)).toEqual([1, 2, 3]);
  expect(progress.at(-1)).toMatchObject({ total: 3, message: "round 1: denoising step 3/3" });

  const mask = rgbaPng(first!, [0, 0, 32, 32]).toString("base64");
  const edited = await call(client, "edit_image", {
    session_id: generated.data.session_id,
    text: "add a green triangle at the top left",
    mask,
    steps: 3,
  });
  expect(edited.result.isError).toBeFalsy();
  const [second] = images(edited.result);
  expect(edited.data.session_id).toBe(generated.data.session_id);
  expect(edited.data.rounds[0].mode).toBe("inpaint");
  expect(edited.data.seed).toBe(4242);
  const changed = changedPixels(first!, second!);
  expect(changed.length).toBeGreaterThan(0);
  for (const i of changed) expect(i % 64 < 32 && Math.floor(i / 64) < 32).toBe(true);
  return { generated, edited };
}

describe("atelier mcp (stdio)", () => {
  let client: Client;
  let models: string;

  beforeAll(async () => {
    models = fixtureModels();
    const env = { ...process.env, ATELIER_THREADS: "1" } as Record<string, string>;
    delete env.ATELIER_DESCRIBER;
    client = new Client({ name: "atelier-test", version: "1.0.0" });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: ["bin/atelier.js", "mcp", "--models", models],
        env,
        stderr: "ignore",
      }),
    );
  });

  afterAll(async () => {
    await client?.close();
    removeDir(models);
  });

  it("lists the three tools with the routes' input schemas", async () => {
    const { tools } = await client.listTools();
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    expect(Object.keys(byName).sort()).toEqual(["describe_image", "edit_image", "generate_image"]);
    const generate = byName.generate_image!.inputSchema as Json;
    expect(Object.keys(generate.properties)).toEqual(
      expect.arrayContaining(["prompt", "plan", "seed", "steps", "guidance", "sampler", "rounds", "n"]),
    );
    expect(generate.properties.steps).toMatchObject({ minimum: 1, maximum: 100 });
    expect(Object.keys((byName.edit_image!.inputSchema as Json).properties)).toEqual(
      expect.arrayContaining(["session_id", "text", "mask", "image", "seed", "strength"]),
    );
    expect(byName.generate_image!.outputSchema).toBeTruthy();
  });

  it("generates with progress notifications, then edits inside a mask", async () => {
    const { generated } = await generateAndEdit(client);
    // Over stdio the service's URLs are not reachable, so none are handed out.
    expect(generated.data.images).toEqual([{ seed: 4242 }]);
  });

  it("rejects bad input naming the field", async () => {
    const steps = await call(client, "generate_image", { prompt: "a star", steps: 0 });
    expect(steps.result.isError).toBe(true);
    expect(JSON.stringify(steps.result.content)).toContain("steps");
    const edit = await call(client, "edit_image", { text: "make it blue" });
    expect(edit.result.isError).toBe(true);
    expect(JSON.stringify(edit.result.content)).toContain("session_id: is required");
    const unknown = await call(client, "edit_image", { session_id: "sess_nope", text: "make it blue" });
    expect(unknown.result.isError).toBe(true);
    expect(JSON.stringify(unknown.result.content)).toContain("no session");
  });

  it("describe_image says clearly that it is unavailable without a describer model", async () => {
    const { result } = await call(client, "describe_image", {
      image: rgbaPng(testPixel(), null).toString("base64"),
    });
    expect(result.isError).toBe(true);
    expect(JSON.stringify(result.content)).toContain(
      "describe_image is unavailable: no describer model folder",
    );
  });
});

const DESCRIBER = resolve("models/describer");

describe.skipIf(!existsSync(DESCRIBER))("atelier mcp describe_image with the embedded describer", () => {
  it("re-describes an image in the plan format", async () => {
    const models = fixtureModels();
    symlinkSync(DESCRIBER, join(models, "describer"));
    const client = new Client({ name: "atelier-test", version: "1.0.0" });
    try {
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: ["bin/atelier.js", "mcp", "--models", models],
          env: { ...process.env, ATELIER_THREADS: "1" } as Record<string, string>,
          stderr: "ignore",
        }),
      );
      const { result, data } = await call(client, "describe_image", {
        image: rgbaPng(testPixel(), null).toString("base64"),
      });
      expect(result.isError).toBeFalsy();
      expect(data.plan).toMatch(/^<IMG_BEGIN> .* <IMG_END>$/);
      expect(data.describer).toBe("embedded");
    } finally {
      await client.close();
      removeDir(models);
    }
  });
});

/** A white 64×64 picture with a red square. */
function testPixel() {
  const data = new Uint8Array(64 * 64 * 3).fill(245);
  for (let y = 20; y < 44; y++) for (let x = 20; x < 44; x++) data.set([220, 40, 40], (y * 64 + x) * 3);
  return { width: 64, height: 64, data };
}

describe("/mcp over Streamable HTTP", () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;

  beforeAll(async () => {
    server = await startTestServer({ ATELIER_API_KEYS: "sk-mcp" });
  });

  afterAll(async () => {
    await server?.close();
  });

  const connect = async (key?: string) => {
    const client = new Client({ name: "atelier-test", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), {
        requestInit: key ? { headers: { authorization: `Bearer ${key}` } } : {},
      }),
    );
    return client;
  };

  it("refuses callers without the API key", async () => {
    await expect(connect()).rejects.toThrow(/401|API key/);
    await expect(connect("sk-wrong")).rejects.toThrow(/401|incorrect API key/);
  });

  it("generates and edits as the key's owner; the image URLs are the service's", async () => {
    const client = await connect("sk-mcp");
    try {
      const { generated, edited } = await generateAndEdit(client);
      const url = edited.data.images[0].url as string;
      expect(url.startsWith(`${server.url}/v1/images/img_`)).toBe(true);
      expect((await fetch(url)).headers.get("content-type")).toBe("image/png");
      // The session is the key's: the agent API shows it with the key, and not without.
      const session = `${server.url}/v1/sessions/${generated.data.session_id}`;
      const mine = await fetch(session, { headers: { authorization: "Bearer sk-mcp" } });
      expect(((await mine.json()) as Json).messages).toHaveLength(4);
      expect((await fetch(session)).status).toBe(401);
    } finally {
      await client.close();
    }
  });
});
