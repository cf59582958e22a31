/**
 * The service over HTTP on a loopback port, with the real engine on the tiny fixtures: the official
 * OpenAI client (generate, edit), server-sent events, cancel, an edit session, OpenAPI/docs/metrics.
 */
import jpeg from "jpeg-js";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeBase64Png } from "../pipelines/image.ts";
import {
  changedPixels,
  decode,
  type Json,
  json,
  png,
  readEvents,
  rgbaPng,
  type SseEvent,
  startTestServer,
  testImage,
} from "./service-harness.ts";

let server: Awaited<ReturnType<typeof startTestServer>>;
let base: string;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestServer();
  base = server.url;
  client = new OpenAI({ apiKey: "unused", baseURL: `${base}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await server?.close();
});

async function post(path: string, body: unknown) {
  const response = await fetch(`${base}${path}`, json(body));
  return { status: response.status, body: (await response.json()) as Json };
}

describe("OpenAI-compatible endpoints with the official client", () => {
  it("images.generate returns decodable 64×64 PNGs with the plan as revised_prompt", async () => {
    const result = await client.images.generate({
      prompt: "two blue circles on a white background",
      n: 2,
      size: "64x64" as never,
      response_format: "b64_json",
    });
    expect(result.created).toBeGreaterThan(0);
    expect(result.data).toHaveLength(2);
    for (const item of result.data!) {
      const { image } = decodeBase64Png(item.b64_json!);
      expect([image.width, image.height]).toEqual([64, 64]);
      expect(item.revised_prompt).toMatch(/^<IMG_BEGIN> .* <IMG_END>$/);
    }
    // Two seeds: two different images.
    expect(result.data![0]!.b64_json).not.toBe(result.data![1]!.b64_json);
  });

  it("response_format url gives a URL this server serves as PNG", async () => {
    const result = await client.images.generate({ prompt: "a star", response_format: "url" });
    const url = result.data![0]!.url!;
    expect(url.startsWith(`${base}/v1/images/img_`)).toBe(true);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("image/png");
    expect(decode(new Uint8Array(await response.arrayBuffer())).width).toBe(64);
  });

  it("images.edit repaints only the mask's transparent pixels", async () => {
    const source = testImage();
    const hole: [number, number, number, number] = [0, 0, 32, 32];
    const result = await client.images.edit({
      image: await toFile(png(source), "image.png", { type: "image/png" }),
      mask: await toFile(rgbaPng(source, hole), "mask.png", { type: "image/png" }),
      prompt: "a green triangle on a white background",
      n: 1,
      size: "64x64" as never,
      response_format: "b64_json",
    });
    const edited = decodeBase64Png(result.data![0]!.b64_json!).image;
    const changed = changedPixels(source, edited);
    expect(changed.length).toBeGreaterThan(0);
    for (const i of changed) expect(i % 64 < 32 && Math.floor(i / 64) < 32).toBe(true);
    expect(result.data![0]!.revised_prompt).toContain("<IMG_BEGIN>");
  });

  it("images.edit accepts a JPEG without a mask (img2img over the whole image)", async () => {
    const source = testImage();
    const rgba = new Uint8Array(64 * 64 * 4);
    for (let i = 0; i < 64 * 64; i++) rgba.set([...source.data.subarray(i * 3, i * 3 + 3), 255], i * 4);
    const bytes = jpeg.encode({ width: 64, height: 64, data: rgba }, 90).data;
    const result = await client.images.edit({
      image: await toFile(bytes, "photo.jpg", { type: "image/jpeg" }),
      prompt: "same scene, watercolor",
    });
    const edited = decodeBase64Png(result.data![0]!.b64_json!).image;
    expect([edited.width, edited.height]).toEqual([64, 64]);
  });

  it("errors reach the client as OpenAI errors naming the field", async () => {
    const error = await client.images.generate({ prompt: "a star", size: "1024x1024" }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    const apiError = error as InstanceType<typeof OpenAI.BadRequestError>;
    expect(apiError.status).toBe(400);
    expect(apiError.param).toBe("size");
    expect(apiError.message).toContain("64x64");
  });
});

describe("agent API: generations", () => {
  it("streams every event in order to a subscriber, and replays them to a late one", async () => {
    const created = await post("/v1/generations", {
      prompt: "a red circle",
      steps: 3,
      seed: 11,
      preview: true,
    });
    expect(created.status).toBe(202);
    expect(created.body).toMatchObject({ object: "generation", status: "queued" });
    const id = created.body.id as string;
    const live = await readEvents(`${base}/v1/generations/${id}/events`);
    const types = live.map((e) => e.event);
    expect(types).toEqual(["queued", "planning", "plan", "step", "step", "step", "done"]);
    expect(live.map((e) => Number(e.id))).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(live.filter((e) => e.event === "step").map((e) => [e.data.step, e.data.steps])).toEqual([
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
    for (const step of live.filter((e) => e.event === "step"))
      expect(decodeBase64Png(step.data.preview as string).image.width).toBe(64);
    const done = live.at(-1)!.data as { images: { url: string; seed: number }[]; plans: string[] };
    expect(done.images[0]!.seed).toBe(11);
    expect((await fetch(done.images[0]!.url)).status).toBe(200);

    const late = await readEvents(`${base}/v1/generations/${id}/events`);
    expect(late.map((e: SseEvent) => [e.event, e.id])).toEqual(live.map((e) => [e.event, e.id]));
    const resumed = await readEvents(`${base}/v1/generations/${id}/events`, {
      headers: { "last-event-id": "5" },
    });
    expect(resumed.map((e) => e.id)).toEqual(["6", "7"]);

    const record = (await (await fetch(`${base}/v1/generations/${id}`)).json()) as Json;
    expect(record.status).toBe("succeeded");
    expect(record.seeds).toEqual([11]);
    expect(record.plans[0]).toBe(done.plans[0]);
    expect(record.trace).toHaveLength(1);
    expect(record.trace[0]).toMatchObject({
      round: 1,
      mode: "txt2img",
      conditioning: "projection",
      seeds: [11],
      settings: { steps: 3 },
    });
    expect(record.timings.total).toBeGreaterThan(0);
  });

  it("renders a given plan without planning, reproducibly for a seed", async () => {
    const plan =
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 top left <OBJECT> 1 one large star <COLOR> 1 red ; background white <LIGHTING> daylight <IMG_END>";
    const ids: string[] = [];
    for (let k = 0; k < 2; k++) {
      const { body } = await post("/v1/generations", { plan, steps: 2, seed: 5 });
      const events = await readEvents(`${base}/v1/generations/${body.id}/events`);
      expect(events.map((e) => e.event)).toEqual(["queued", "plan", "step", "step", "done"]);
      ids.push((events.at(-1)!.data.images as { url: string }[])[0]!.url);
    }
    const [a, b] = await Promise.all(ids.map(async (u) => Buffer.from(await (await fetch(u)).arrayBuffer())));
    expect(a!.equals(b!)).toBe(true);
  });

  it("cancels a running generation and a queued one", async () => {
    const running = await post("/v1/generations", { prompt: "a big square", steps: 100, preview: true });
    const queued = await post("/v1/generations", { prompt: "a small square", steps: 2 });
    let cancelled: Promise<{ status: number; body: Json }> | null = null;
    const events = await readEvents(`${base}/v1/generations/${running.body.id}/events`, {
      onEvent: (e) => {
        if (e.event === "step" && !cancelled)
          cancelled = post(`/v1/generations/${running.body.id}/cancel`, {});
      },
    });
    const answer = await cancelled!;
    expect(answer.status).toBe(200);
    expect(answer.body.status).toBe("cancelled");
    expect(events.at(-1)).toMatchObject({ event: "error", data: { status: "cancelled" } });
    expect(events.filter((e) => e.event === "step").length).toBeLessThan(100);

    // The second job may have started by now; either way it ends cancelled or finished, never hanging.
    const second = await post(`/v1/generations/${queued.body.id}/cancel`, {});
    if (second.status === 200) expect(second.body.status).toBe("cancelled");
    else expect(second.body.error).toMatchObject({ code: "not_cancellable", param: "id" });

    const blocker = await post("/v1/generations", { prompt: "a big square", steps: 100 });
    const waiting = await post("/v1/generations", { prompt: "a star", steps: 2 });
    const dropped = await post(`/v1/generations/${waiting.body.id}/cancel`, {});
    expect(dropped.body).toMatchObject({ status: "cancelled", started_at: null });
    const replay = await readEvents(`${base}/v1/generations/${waiting.body.id}/events`);
    expect(replay.map((e) => e.event)).toEqual(["queued", "error"]);
    await post(`/v1/generations/${blocker.body.id}/cancel`, {});
  });
});

describe("synchronous requests", () => {
  it("cancel their job when the client goes away", async () => {
    const session = await post("/v1/sessions", {});
    const client = new AbortController();
    const request = fetch(`${base}/v1/sessions/${session.body.id}/messages`, {
      ...json({ text: "a star", steps: 100, preview: true }),
      signal: client.signal,
    }).catch((error: Error) => error.name);
    const until = async (check: () => boolean) => {
      for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
      expect(check()).toBe(true);
    };
    await until(() => server.service.queue.stats().running === 1);
    client.abort();
    expect(await request).toBe("AbortError");
    const status = () =>
      (
        server.service.store.db
          .prepare("SELECT status FROM generations WHERE session_id = ?")
          .get(session.body.id) as {
          status: string;
        }
      ).status;
    await until(() => status() === "cancelled");
    expect((await (await fetch(`${base}/v1/sessions/${session.body.id}`)).json()).messages).toEqual([]);
  });
});

describe("agent API: an edit session", () => {
  it("makes an image, then three edits, keeping seed and history; a masked edit changes only the mask", async () => {
    const session = await post("/v1/sessions", { title: "shapes" });
    expect(session.status).toBe(201);
    const id = session.body.id as string;
    const say = async (body: Record<string, unknown>) => {
      const reply = await post(`/v1/sessions/${id}/messages`, { steps: 4, ...body });
      expect(reply.status, JSON.stringify(reply.body)).toBe(200);
      return reply.body;
    };
    const fetchImage = async (url: string) => decode(new Uint8Array(await (await fetch(url)).arrayBuffer()));

    const first = await say({ text: "a red circle on a white background", seed: 42 });
    expect(first).toMatchObject({ object: "message", role: "assistant", seed: 42 });
    expect(first.plan).toContain("<IMG_BEGIN>");
    const second = await say({ text: "make the circle blue" });
    expect(second.seed).toBe(42);
    const third = await say({ text: "add a moon at the top right", strength: 0.8 });
    const before = await fetchImage(third.image.url);
    const mask = rgbaPng(before, [32, 32, 64, 64]);
    const fourth = await say({ text: "same scene, watercolor", mask: mask.toString("base64") });
    const after = await fetchImage(fourth.image.url);
    const changed = changedPixels(before, after);
    expect(changed.length).toBeGreaterThan(0);
    for (const i of changed) expect(i % 64 >= 32 && Math.floor(i / 64) >= 32).toBe(true);

    const history = (await (await fetch(`${base}/v1/sessions/${id}`)).json()) as Json;
    expect(history.messages.map((m: { role: string }) => m.role)).toEqual([
      "user",
      "assistant",
      "user",
      "assistant",
      "user",
      "assistant",
      "user",
      "assistant",
    ]);
    expect(history.messages[6]).toMatchObject({ text: "same scene, watercolor" });
    expect(history.messages[6].mask.id).toMatch(/^img_/);
    const ids = history.messages
      .filter((m: { role: string }) => m.role === "assistant")
      .map((m: Json) => m.image.id);
    expect(new Set(ids).size).toBe(4);
    const generation = (await (await fetch(`${base}/v1/generations/${fourth.generation_id}`)).json()) as Json;
    expect(generation.trace[0].mode).toBe("inpaint");
    const img2img = (await (await fetch(`${base}/v1/generations/${third.generation_id}`)).json()) as Json;
    expect(img2img.trace[0]).toMatchObject({ mode: "img2img", settings: { strength: 0.8 } });

    const deleted = await fetch(`${base}/v1/sessions/${id}`, { method: "DELETE" });
    expect(await deleted.json()).toEqual({ id, object: "session", deleted: true });
    expect((await fetch(`${base}/v1/sessions/${id}`)).status).toBe(404);
    expect((await fetch(`${base}/v1/images/${fourth.image.id}`)).status).toBe(404);
  });
});

describe("operations", () => {
  it("serves the OpenAPI document from the route schemas, a self-contained docs page, and metrics", async () => {
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as Json;
    expect(doc.openapi).toBe("3.1.0");
    const body = doc.paths["/v1/generations"].post.requestBody.content["application/json"].schema;
    expect(body.properties.steps).toMatchObject({ type: "integer", minimum: 1, maximum: 100 });
    expect(body.properties.prompt.maxLength).toBe(1024);
    const edit = doc.paths["/v1/images/edits"].post.requestBody.content["multipart/form-data"].schema;
    expect(edit.properties.image).toMatchObject({ type: "string", format: "binary" });
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/v1/sessions/{id}/messages",
        "/v1/images/generations",
        "/v1/generations/{id}/events",
      ]),
    );

    const page = await (await fetch(`${base}/docs`)).text();
    expect(page).toContain("/v1/sessions/{id}/messages");
    expect(page).not.toMatch(/(src|href)="https?:/);
    expect(page).not.toMatch(/<script/);

    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^atelier_queue_depth 0$/m);
    expect(metrics).toMatch(
      /^atelier_http_requests_total\{method="POST",route="\/v1\/generations",status="202"\} \d+$/m,
    );
    expect(metrics).toMatch(/^atelier_job_duration_seconds_count\{kind="generate"\} \d+$/m);
    expect(metrics).toMatch(/^atelier_errors_total\{code="invalid_value"\} \d+$/m);
  });
});
