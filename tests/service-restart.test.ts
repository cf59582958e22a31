/**
 * Persistence across processes: `atelier serve` killed with SIGKILL during a generation, then a new
 * process on the same data directory keeps the session (messages, images) and reports the interrupted
 * generation as failed; SIGTERM shuts down gracefully, cancelling the running job and closing the database.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import {
  fixtureModels,
  getJson,
  json,
  readEvents,
  removeDir,
  spawnServer,
  stopProcess,
  tempDataDir,
} from "./service-harness.ts";

const KEY = { authorization: "Bearer key-r" };
const models = fixtureModels();
const data = tempDataDir();
const env = { ATELIER_MODELS: models, ATELIER_DATA: data, ATELIER_API_KEYS: "key-r" };

afterAll(() => {
  removeDir(models);
  removeDir(data);
});

/** Starts a long generation and resolves once its first denoising step has been reported. */
async function startLongGeneration(url: string): Promise<{ id: string; stream: Promise<unknown> }> {
  const created = await getJson(
    `${url}/v1/generations`,
    json({ prompt: "a large star", steps: 100, preview: true }, KEY),
  );
  expect(created.status).toBe(202);
  let stepped!: () => void;
  const firstStep = new Promise<void>((resolve) => {
    stepped = resolve;
  });
  const stream = readEvents(`${url}/v1/generations/${created.body.id}/events`, {
    headers: KEY,
    onEvent: (e) => {
      if (e.event === "step") stepped();
    },
  }).catch((error: unknown) => error);
  await firstStep;
  return { id: created.body.id, stream };
}

describe("restart", () => {
  it("keeps sessions through kill -9 and marks the interrupted generation failed; SIGTERM is graceful", async () => {
    // First process: a session with one image, then a generation killed mid-way.
    const first = await spawnServer(env);
    const session = await getJson(`${first.url}/v1/sessions`, json({ title: "kept" }, KEY));
    const reply = await getJson(
      `${first.url}/v1/sessions/${session.body.id}/messages`,
      json({ text: "a red circle", steps: 2, seed: 9 }, KEY),
    );
    expect(reply.status).toBe(200);
    const imageBefore = Buffer.from(
      await (await fetch(`${first.url}/v1/images/${reply.body.image.id}`, { headers: KEY })).arrayBuffer(),
    );
    const killed = await startLongGeneration(first.url);
    await stopProcess(first.child, "SIGKILL");
    expect(first.child.signalCode).toBe("SIGKILL");

    // Second process on the same data directory.
    const second = await spawnServer({ ...env, ATELIER_SHUTDOWN_GRACE_MS: "0" });
    const kept = await getJson(`${second.url}/v1/sessions/${session.body.id}`, { headers: KEY });
    expect(kept.status).toBe(200);
    expect(kept.body).toMatchObject({ title: "kept" });
    expect(kept.body.messages.map((m: { role: string }) => m.role)).toEqual(["user", "assistant"]);
    const imageAfter = Buffer.from(
      await (await fetch(`${second.url}/v1/images/${reply.body.image.id}`, { headers: KEY })).arrayBuffer(),
    );
    expect(imageAfter.equals(imageBefore)).toBe(true);

    const interrupted = await getJson(`${second.url}/v1/generations/${killed.id}`, { headers: KEY });
    expect(interrupted.body).toMatchObject({ status: "failed", error: { code: "interrupted" } });
    const replay = await readEvents(`${second.url}/v1/generations/${killed.id}/events`, { headers: KEY });
    expect(replay[0]!.event).toBe("queued");
    expect(replay.some((e) => e.event === "step")).toBe(true);
    expect(replay.at(-1)!.event).toBe("error");

    // The session goes on from its stored image and seed.
    const edit = await getJson(
      `${second.url}/v1/sessions/${session.body.id}/messages`,
      json({ text: "make the circle blue", steps: 2 }, KEY),
    );
    expect(edit.status).toBe(200);
    expect(edit.body.seed).toBe(9);

    // SIGTERM with no grace: the running job is cancelled, the process exits 0, the database is closed.
    const running = await startLongGeneration(second.url);
    expect(await stopProcess(second.child, "SIGTERM")).toBe(0);
    const events = (await running.stream) as { event: string; data: { status: string } }[];
    expect(events.at(-1)).toMatchObject({ event: "error", data: { status: "cancelled" } });
    const db = new Database(join(data, "atelier.db"), { readonly: true });
    try {
      const status = (id: string) =>
        (db.prepare("SELECT status FROM generations WHERE id = ?").get(id) as { status: string }).status;
      expect(status(running.id)).toBe("cancelled");
      expect(status(killed.id)).toBe("failed");
      const messages = db
        .prepare("SELECT COUNT(*) AS n FROM messages WHERE session_id = ?")
        .get(session.body.id);
      expect(messages).toEqual({ n: 4 });
    } finally {
      db.close();
    }
  });
});
