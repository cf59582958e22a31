/**
 * The agent behind the service: `serve` picks it when a describer folder exists; generations stream the
 * loop's events and store its rounds; bad input to the edit route names the field; a generation that
 * fails in a later round is stored as failed with the rounds it finished.
 */
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createImage } from "../pipelines/image.ts";
import type { AgentEngine } from "../src/agent/engine.ts";
import { AtelierService } from "../src/service/service.ts";
import { loadFixtureAgent, SwitchDescriber } from "./agent-harness.ts";
import {
  getJson,
  json,
  readEvents,
  removeDir,
  rgbaPng,
  startTestServer,
  tempDataDir,
} from "./service-harness.ts";

describe("the service with the agent engine", () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let session: string;
  let generation: string;

  beforeAll(async () => {
    server = await startTestServer({ ATELIER_DESCRIBER: resolve("models/describer") });
    session = (await getJson(`${server.url}/v1/sessions`, json({}))).body.id;
    const reply = await getJson(
      `${server.url}/v1/sessions/${session}/messages`,
      json({ text: "a red star at the top left", steps: 2, rounds: 2, seed: 4 }),
    );
    expect(reply.status).toBe(200);
    generation = reply.body.generation_id;
  });

  afterAll(async () => {
    await server?.close();
  });

  it("loads the agent when the describer folder exists", async () => {
    const health = (await getJson(`${server.url}/health`)).body;
    expect(health.engine).toMatchObject({ critique: true, planner: true });
    expect(health.engine.name).toContain("critic");
    expect(health.models.describer).toMatchObject({ status: "loaded" });
  });

  it("stores every round with its critique and streams the loop's events", async () => {
    const row = (await getJson(`${server.url}/v1/generations/${generation}`)).body;
    expect(row.status).toBe("succeeded");
    expect(row.trace.length).toBeGreaterThanOrEqual(1);
    expect(row.trace.length).toBeLessThanOrEqual(2);
    for (const round of row.trace) {
      expect(round.critique.agreement).toBeGreaterThanOrEqual(0);
      expect(round.images[0].id).toMatch(/^img_/);
    }
    const types = (await readEvents(`${server.url}/v1/generations/${generation}/events`)).map((e) => e.event);
    expect(types.slice(0, 5)).toEqual(["queued", "planning", "plan", "conditioning", "step"]);
    expect(types).toContain("describing");
    expect(types).toContain("critique");
    expect(types.at(-1)).toBe("done");
  });

  it("answers bad edits with an error naming the field", async () => {
    const rounds = await getJson(
      `${server.url}/v1/sessions/${session}/messages`,
      json({ text: "x", rounds: 9 }),
    );
    expect(rounds.status).toBe(400);
    expect(rounds.body.error.param).toBe("rounds");
    const zero = await getJson(`${server.url}/v1/generations`, json({ prompt: "a star", rounds: 0 }));
    expect(zero.status).toBe(400);
    expect(zero.body.error.param).toBe("rounds");
    const unknown = await getJson(
      `${server.url}/v1/sessions/sess_nope/messages`,
      json({ text: "make it blue" }),
    );
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toContain('no session "sess_nope"');
    const mask = Buffer.from(rgbaPng(createImage(32, 32), [0, 0, 8, 8])).toString("base64");
    const wrong = await getJson(`${server.url}/v1/sessions/${session}/messages`, json({ text: "x", mask }));
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.param).toBe("mask");
  });
});

describe("a generation that fails in round 2", () => {
  let engine: AgentEngine;
  let describer: SwitchDescriber;
  let dataDir: string;

  beforeAll(async () => {
    describer = await SwitchDescriber.load();
    engine = await loadFixtureAgent(describer);
    dataDir = tempDataDir();
  });

  afterAll(() => {
    // The service owns the engine from the test on, and disposes it when it closes.
    removeDir(dataDir);
  });

  it("is stored as failed, naming the round, with the round it finished and its image", async () => {
    const service = new AtelierService({ dataDir, engine });
    try {
      describer.failOnCall = 2;
      const { id, done } = await service.startGeneration("me", "generate", {
        prompt: "a red star",
        steps: 2,
        rounds: 3,
        seed: 1,
      });
      await expect(done).rejects.toMatchObject({ code: "describer_failed" });
      const row = service.generation("me", id);
      expect(row.status).toBe("failed");
      expect(row.error!.message).toContain("round 2 (describe)");
      expect(row.trace).toHaveLength(1);
      const round = row.trace![0] as { round: number; images: string[]; critique: { agreement: number } };
      expect(round.round).toBe(1);
      expect(round.images[0]).toMatch(/^img_/);
      expect(service.imagePng("me", round.images[0]!).length).toBeGreaterThan(0);
    } finally {
      await service.close();
    }
  });
});
