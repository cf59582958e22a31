/**
 * Bad input over HTTP, with API keys on: each case gets its 4xx and an OpenAI-style error body whose
 * `param` names the field (and whose message mentions it); keys only see what they created; the server
 * keeps serving afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createImage } from "../pipelines/image.ts";
import { getJson, type Json, json, png, rgbaPng, startTestServer, testImage } from "./service-harness.ts";

const A = { authorization: "Bearer key-a" };
const B = { authorization: "Bearer key-b" };

let server: Awaited<ReturnType<typeof startTestServer>>;
let base: string;
/** Key A's session with one image, its message and generation. */
let owned: { session: string; image: string; imageUrl: string; generation: string };

beforeAll(async () => {
  // Without a projection folder: this server renders plans through the text encoder (the caption path).
  server = await startTestServer({ ATELIER_API_KEYS: "key-a, key-b" }, { projection: false });
  base = server.url;
  const session = await getJson(`${base}/v1/sessions`, json({}, A));
  const reply = await getJson(
    `${base}/v1/sessions/${session.body.id}/messages`,
    json({ text: "a red circle", steps: 2 }, A),
  );
  expect(reply.status).toBe(200);
  owned = {
    session: session.body.id,
    image: reply.body.image.id,
    imageUrl: reply.body.image.url,
    generation: reply.body.generation_id,
  };
});

afterAll(async () => {
  await server?.close();
});

interface Case {
  name: string;
  status: number;
  /** The field the error must name (null: none, e.g. an unknown route). */
  param: string | null;
  request: () => [string, RequestInit?];
}

const gen = (body: unknown, headers: Record<string, string> = A): [string, RequestInit] => [
  "/v1/generations",
  json(body, headers),
];
const oai = (body: unknown): [string, RequestInit] => ["/v1/images/generations", json(body, A)];
const message = (body: unknown, headers: Record<string, string> = A): [string, RequestInit] => [
  `/v1/sessions/${owned.session}/messages`,
  json(body, headers),
];
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

function form(fields: Record<string, string | Blob>): RequestInit {
  const body = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === "string") body.append(k, v);
    else body.append(k, v, "f.png");
  }
  return { method: "POST", headers: A, body };
}
const pngBlob = (bytes: Uint8Array) => new Blob([new Uint8Array(bytes)], { type: "image/png" });

const cases: Case[] = [
  // Keys.
  { name: "no key", status: 401, param: "authorization", request: () => gen({ prompt: "a star" }, {}) },
  {
    name: "unknown key",
    status: 401,
    param: "authorization",
    request: () => gen({ prompt: "a star" }, { authorization: "Bearer nope" }),
  },
  {
    name: "not a bearer header",
    status: 401,
    param: "authorization",
    request: () => gen({ prompt: "a star" }, { authorization: "Basic a2V5LWE6" }),
  },
  // Bodies and types.
  {
    name: "body not JSON",
    status: 400,
    param: "body",
    request: () => ["/v1/generations", { method: "POST", headers: A, body: "{prompt:" }],
  },
  { name: "body an array", status: 400, param: "body", request: () => gen([{ prompt: "a star" }]) },
  { name: "no prompt nor plan", status: 400, param: "prompt", request: () => gen({ steps: 4 }) },
  {
    name: "prompt and plan",
    status: 400,
    param: "plan",
    request: () => gen({ prompt: "a star", plan: "<IMG_BEGIN> <IMG_END>" }),
  },
  { name: "prompt a number", status: 400, param: "prompt", request: () => gen({ prompt: 7 }) },
  { name: "prompt empty", status: 400, param: "prompt", request: () => gen({ prompt: "  " }) },
  {
    name: "prompt 1025 chars",
    status: 400,
    param: "prompt",
    request: () => gen({ prompt: "a".repeat(1025) }),
  },
  { name: "steps 0", status: 400, param: "steps", request: () => gen({ prompt: "a star", steps: 0 }) },
  { name: "steps 101", status: 400, param: "steps", request: () => gen({ prompt: "a star", steps: 101 }) },
  { name: "steps 2.5", status: 400, param: "steps", request: () => gen({ prompt: "a star", steps: 2.5 }) },
  {
    name: "guidance -1",
    status: 400,
    param: "guidance",
    request: () => gen({ prompt: "a star", guidance: -1 }),
  },
  {
    name: "guidance 21",
    status: 400,
    param: "guidance",
    request: () => gen({ prompt: "a star", guidance: 21 }),
  },
  {
    name: "guidance text",
    status: 400,
    param: "guidance",
    request: () => gen({ prompt: "a star", guidance: "high" }),
  },
  { name: "seed -1", status: 400, param: "seed", request: () => gen({ prompt: "a star", seed: -1 }) },
  { name: "seed 2^32", status: 400, param: "seed", request: () => gen({ prompt: "a star", seed: 2 ** 32 }) },
  { name: "n 5", status: 400, param: "n", request: () => gen({ prompt: "a star", n: 5 }) },
  {
    name: "sampler unknown",
    status: 400,
    param: "sampler",
    request: () => gen({ prompt: "a star", sampler: "plms" }),
  },
  { name: "rounds 9", status: 400, param: "rounds", request: () => gen({ prompt: "a star", rounds: 9 }) },
  {
    name: "unknown field",
    status: 400,
    param: "colour",
    request: () => gen({ prompt: "a star", colour: "red" }),
  },
  { name: "plan not a plan", status: 400, param: "plan", request: () => gen({ plan: "a red star, please" }) },
  {
    name: "body over 64 KB",
    status: 413,
    param: "body",
    request: () => gen({ prompt: "a star", negative: "x".repeat(70_000) }),
  },
  // Unknown ids (and other keys' ids).
  {
    name: "unknown generation",
    status: 404,
    param: "id",
    request: () => ["/v1/generations/gen_nope", { headers: A }],
  },
  {
    name: "unknown generation's events",
    status: 404,
    param: "id",
    request: () => ["/v1/generations/gen_nope/events", { headers: A }],
  },
  {
    name: "cancel unknown",
    status: 404,
    param: "id",
    request: () => ["/v1/generations/gen_nope/cancel", json({}, A)],
  },
  {
    name: "unknown session",
    status: 404,
    param: "id",
    request: () => ["/v1/sessions/sess_nope", { headers: A }],
  },
  { name: "unknown image", status: 404, param: "id", request: () => ["/v1/images/img_nope", { headers: A }] },
  {
    name: "image URL with a forged signature",
    status: 404,
    param: "id",
    request: () => [`/v1/images/${owned.image}?expires=9999999999&sig=forged`, {}],
  },
  {
    name: "another key's session",
    status: 404,
    param: "id",
    request: () => [`/v1/sessions/${owned.session}`, { headers: B }],
  },
  {
    name: "message to another key's session",
    status: 404,
    param: "id",
    request: () => message({ text: "make it blue" }, B),
  },
  {
    name: "delete another key's session",
    status: 404,
    param: "id",
    request: () => [`/v1/sessions/${owned.session}`, { method: "DELETE", headers: B }],
  },
  {
    name: "another key's generation",
    status: 404,
    param: "id",
    request: () => [`/v1/generations/${owned.generation}`, { headers: B }],
  },
  {
    name: "another key's image",
    status: 404,
    param: "id",
    request: () => [`/v1/images/${owned.image}`, { headers: B }],
  },
  // Session messages and their images.
  { name: "message without text", status: 400, param: "text", request: () => message({ steps: 2 }) },
  {
    name: "session title a number",
    status: 400,
    param: "title",
    request: () => ["/v1/sessions", json({ title: 5 }, A)],
  },
  {
    name: "strength 0",
    status: 400,
    param: "strength",
    request: () => message({ text: "bluer", strength: 0 }),
  },
  {
    name: "lock not layout or style",
    status: 400,
    param: "lock",
    request: () => message({ text: "bluer", lock: "colour" }),
  },
  {
    name: "lock on a server without projection layers",
    status: 400,
    param: "lock",
    request: () => message({ text: "bluer", lock: "layout" }),
  },
  {
    name: "image not base64",
    status: 400,
    param: "image",
    request: () => message({ text: "x", image: "!!!" }),
  },
  {
    name: "image neither PNG nor JPEG",
    status: 400,
    param: "image",
    request: () => message({ text: "x", image: b64(new TextEncoder().encode("GIF89a....")) }),
  },
  {
    name: "image a truncated PNG",
    status: 400,
    param: "image",
    request: () => message({ text: "x", image: b64(png(testImage()).subarray(0, 60)) }),
  },
  {
    name: "image a GIF data URL",
    status: 400,
    param: "image",
    request: () => message({ text: "x", image: "data:image/gif;base64,R0lGODlh" }),
  },
  {
    name: "image of the wrong size",
    status: 400,
    param: "image",
    request: () => message({ text: "x", image: b64(png(createImage(32, 32))) }),
  },
  {
    name: "mask of the wrong size",
    status: 400,
    param: "mask",
    request: () => message({ text: "x", mask: b64(rgbaPng(createImage(48, 48), [0, 0, 8, 8])) }),
  },
  {
    name: "mask before any image",
    status: 400,
    param: "mask",
    request: () => [
      `/v1/sessions/${owned.session}/messages`.replace(owned.session, "NEW"),
      json({ text: "x", mask: b64(rgbaPng(testImage(), [0, 0, 8, 8])) }, A),
    ],
  },
  // OpenAI-compatible endpoints.
  {
    name: "OpenAI size",
    status: 400,
    param: "size",
    request: () => oai({ prompt: "a star", size: "1024x1024" }),
  },
  { name: "OpenAI n 10", status: 400, param: "n", request: () => oai({ prompt: "a star", n: 10 }) },
  {
    name: "OpenAI response_format",
    status: 400,
    param: "response_format",
    request: () => oai({ prompt: "a star", response_format: "jpeg" }),
  },
  { name: "OpenAI prompt missing", status: 400, param: "prompt", request: () => oai({ n: 1 }) },
  {
    name: "OpenAI edit as JSON",
    status: 400,
    param: "body",
    request: () => ["/v1/images/edits", json({ prompt: "x" }, A)],
  },
  {
    name: "OpenAI edit without image",
    status: 400,
    param: "image",
    request: () => ["/v1/images/edits", form({ prompt: "a star" })],
  },
  {
    name: "OpenAI edit with a broken image",
    status: 400,
    param: "image",
    request: () => [
      "/v1/images/edits",
      form({ prompt: "a star", image: pngBlob(png(testImage()).subarray(0, 100)) }),
    ],
  },
  {
    name: "OpenAI edit with a mask of the wrong size",
    status: 400,
    param: "mask",
    request: () => [
      "/v1/images/edits",
      form({
        prompt: "a star",
        image: pngBlob(png(testImage())),
        mask: pngBlob(rgbaPng(createImage(32, 32), [0, 0, 4, 4])),
      }),
    ],
  },
  {
    name: "OpenAI edit with n not a number",
    status: 400,
    param: "n",
    request: () => [
      "/v1/images/edits",
      form({ prompt: "a star", n: "two", image: pngBlob(png(testImage())) }),
    ],
  },
  {
    name: "OpenAI edit with an image over 4 MB",
    status: 413,
    param: "image",
    request: () => {
      const big = new Uint8Array(4 * 1024 * 1024 + 10);
      big.set(png(testImage()));
      return ["/v1/images/edits", form({ prompt: "a star", image: pngBlob(big) })];
    },
  },
];

describe("bad input", () => {
  it("has at least 30 cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases)("$name → $status naming $param", async (c) => {
    const [path, init] = c.request();
    const finalPath = path.includes("/sessions/NEW/")
      ? path.replace("NEW", (await getJson(`${base}/v1/sessions`, json({}, A))).body.id)
      : path;
    const response = await fetch(`${base}${finalPath}`, init);
    const body = (await response.json()) as Json;
    expect(response.status, JSON.stringify(body)).toBe(c.status);
    expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
    expect(body.error.param).toBe(c.param);
    expect(body.error.type).toBe("invalid_request_error");
    expect(typeof body.error.code).toBe("string");
    if (c.param) expect(body.error.message).toContain(c.param);
  });

  it("keeps serving: health, a generation and key A's own data still work", async () => {
    const health = await getJson(`${base}/health`);
    expect(health.body.engine.name).toBe("planner+text-encoder");
    const made = await getJson(`${base}/v1/images/generations`, json({ prompt: "a star" }, A));
    expect(made.status).toBe(200);
    expect(made.body.data).toHaveLength(1);
    const generation = await getJson(`${base}/v1/generations/${owned.generation}`, { headers: A });
    expect(generation.body.trace[0].conditioning).toBe("text_encoder");
    const session = await getJson(`${base}/v1/sessions/${owned.session}`, { headers: A });
    expect(session.body.messages).toHaveLength(2);
    expect((await fetch(`${base}/v1/images/${owned.image}`, { headers: A })).status).toBe(200);
    // The signed URL handed out works without a key, as OpenAI's URLs do.
    expect((await fetch(owned.imageUrl)).status).toBe(200);
  });
});
