/**
 * Persistence: SQLite (better-sqlite3, WAL) for sessions, messages, generations, their traces and events;
 * images as PNG files under the data directory. A file is written (to a temporary name, then renamed)
 * before the row that names it, so a crash leaves at worst an unreferenced file, never a dangling row.
 * WAL commits are durable across a killed process; `recoverInterrupted` marks the generations a dead
 * process left queued or running as failed.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import { decodePng, encodePng, type RgbImage } from "../../pipelines/image.ts";

export type GenerationStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";
export type GenerationKind = "generate" | "edit" | "openai_generate" | "openai_edit";
export type ImageRole = "output" | "trace" | "input" | "mask" | "preview";

export interface GenerationRow {
  id: string;
  owner: string;
  session_id: string | null;
  kind: GenerationKind;
  status: GenerationStatus;
  request: Record<string, unknown>;
  result: Record<string, unknown> | null;
  trace: unknown[] | null;
  error: { message: string; code: string; status: number; param: string | null } | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export interface MessageRow {
  id: string;
  session_id: string;
  seq: number;
  role: "user" | "assistant";
  text: string;
  plan: string | null;
  image_id: string | null;
  mask_image_id: string | null;
  generation_id: string | null;
  seed: number | null;
  sampler: string | null;
  created_at: number;
}

export interface SessionRow {
  id: string;
  owner: string;
  title: string | null;
  created_at: number;
}

export interface ImageRow {
  id: string;
  owner: string;
  generation_id: string | null;
  session_id: string | null;
  role: ImageRole;
  width: number;
  height: number;
  created_at: number;
}

export interface StoredEvent {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString("base64url")}`;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
  id TEXT PRIMARY KEY, owner TEXT NOT NULL, session_id TEXT, kind TEXT NOT NULL, status TEXT NOT NULL,
  request TEXT NOT NULL, result TEXT, trace TEXT, error TEXT,
  created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER);
CREATE INDEX IF NOT EXISTS generations_status ON generations(status);
CREATE INDEX IF NOT EXISTS generations_session ON generations(session_id);
CREATE TABLE IF NOT EXISTS events (
  generation_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (generation_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY, session_id TEXT NOT NULL, seq INTEGER NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL,
  plan TEXT, image_id TEXT, mask_image_id TEXT, generation_id TEXT, seed INTEGER, sampler TEXT,
  created_at INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS messages_order ON messages(session_id, seq);
CREATE TABLE IF NOT EXISTS images (
  id TEXT PRIMARY KEY, owner TEXT NOT NULL, generation_id TEXT, session_id TEXT, role TEXT NOT NULL,
  width INTEGER NOT NULL, height INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS images_session ON images(session_id);
CREATE INDEX IF NOT EXISTS images_generation ON images(generation_id);
`;

const json = (value: unknown) => (value === undefined || value === null ? null : JSON.stringify(value));
const parse = <T>(text: unknown): T | null => (typeof text === "string" ? (JSON.parse(text) as T) : null);

export class Store {
  readonly db: Database.Database;
  readonly imageDir: string;

  constructor(readonly dataDir: string) {
    this.dataDir = resolve(dataDir);
    this.imageDir = join(this.dataDir, "images");
    mkdirSync(this.imageDir, { recursive: true });
    this.db = new Database(join(this.dataDir, "atelier.db"));
    this.db.pragma("journal_mode = WAL");
    // NORMAL in WAL mode: a killed process loses nothing committed; only a power cut may drop the last commits.
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.db.exec(SCHEMA);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** A server that died left these jobs without a worker: they failed. Returns their ids. */
  recoverInterrupted(): string[] {
    const rows = this.db
      .prepare("SELECT id FROM generations WHERE status IN ('queued', 'running')")
      .all() as { id: string }[];
    const error = { message: "the server stopped during this generation", code: "interrupted", status: 500 };
    const fail = this.db.transaction((id: string) => {
      this.finishGeneration(id, "failed", { error: { ...error, param: null } });
      const seq = this.nextEventSeq(id);
      this.appendEvent(id, seq, "error", { ...error, status: "failed" });
    });
    for (const { id } of rows) fail(id);
    return rows.map((r) => r.id);
  }

  // Generations.

  createGeneration(row: {
    id: string;
    owner: string;
    sessionId: string | null;
    kind: GenerationKind;
    request: Record<string, unknown>;
  }): void {
    this.db
      .prepare(
        "INSERT INTO generations (id, owner, session_id, kind, status, request, created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
      )
      .run(row.id, row.owner, row.sessionId, row.kind, JSON.stringify(row.request), Date.now());
  }

  getGeneration(id: string): GenerationRow | null {
    const row = this.db.prepare("SELECT * FROM generations WHERE id = ?").get(id) as
      | Record<string, unknown>
      | undefined;
    if (!row) return null;
    return {
      ...(row as unknown as GenerationRow),
      request: parse(row.request) ?? {},
      result: parse(row.result),
      trace: parse(row.trace),
      error: parse(row.error),
    };
  }

  markRunning(id: string): void {
    this.db
      .prepare("UPDATE generations SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'")
      .run(Date.now(), id);
  }

  finishGeneration(
    id: string,
    status: GenerationStatus,
    outcome: { result?: unknown; trace?: unknown; error?: GenerationRow["error"] },
  ): void {
    this.db
      .prepare(
        "UPDATE generations SET status = ?, result = ?, trace = ?, error = ?, finished_at = ? WHERE id = ?",
      )
      .run(status, json(outcome.result), json(outcome.trace), json(outcome.error), Date.now(), id);
  }

  deleteGeneration(id: string): void {
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM events WHERE generation_id = ?").run(id);
      this.db.prepare("DELETE FROM generations WHERE id = ?").run(id);
    })();
  }

  appendEvent(generationId: string, seq: number, type: string, data: Record<string, unknown>): void {
    this.db
      .prepare("INSERT INTO events (generation_id, seq, type, data) VALUES (?, ?, ?, ?)")
      .run(generationId, seq, type, JSON.stringify(data));
  }

  nextEventSeq(generationId: string): number {
    const row = this.db
      .prepare("SELECT COALESCE(MAX(seq), 0) AS last FROM events WHERE generation_id = ?")
      .get(generationId) as { last: number };
    return row.last + 1;
  }

  events(generationId: string, afterSeq = 0): StoredEvent[] {
    const rows = this.db
      .prepare("SELECT seq, type, data FROM events WHERE generation_id = ? AND seq > ? ORDER BY seq")
      .all(generationId, afterSeq) as { seq: number; type: string; data: string }[];
    return rows.map((r) => ({ seq: r.seq, type: r.type, data: JSON.parse(r.data) }));
  }

  // Sessions and messages.

  createSession(row: { id: string; owner: string; title: string | null }): SessionRow {
    const session = { ...row, created_at: Date.now() };
    this.db
      .prepare("INSERT INTO sessions (id, owner, title, created_at) VALUES (?, ?, ?, ?)")
      .run(session.id, session.owner, session.title, session.created_at);
    return session;
  }

  getSession(id: string): SessionRow | null {
    return (this.db.prepare("SELECT * FROM sessions WHERE id = ?").get(id) as SessionRow | undefined) ?? null;
  }

  messages(sessionId: string): MessageRow[] {
    return this.db
      .prepare("SELECT * FROM messages WHERE session_id = ? ORDER BY seq")
      .all(sessionId) as MessageRow[];
  }

  /** Appends messages in order; call inside a transaction with the generation's completion. */
  appendMessages(sessionId: string, messages: Omit<MessageRow, "seq" | "session_id" | "created_at">[]): void {
    const last = this.db
      .prepare("SELECT COALESCE(MAX(seq), 0) AS last FROM messages WHERE session_id = ?")
      .get(sessionId) as { last: number };
    const insert = this.db.prepare(
      `INSERT INTO messages (id, session_id, seq, role, text, plan, image_id, mask_image_id, generation_id, seed,
       sampler, created_at) VALUES (@id, @session_id, @seq, @role, @text, @plan, @image_id, @mask_image_id,
       @generation_id, @seed, @sampler, @created_at)`,
    );
    const now = Date.now();
    messages.forEach((m, i) => {
      insert.run({ ...m, session_id: sessionId, seq: last.last + i + 1, created_at: now });
    });
  }

  /** Deletes a session with its messages, generations, events and image files. */
  deleteSession(id: string): void {
    const images = this.db.prepare("SELECT id FROM images WHERE session_id = ?").all(id) as { id: string }[];
    this.db.transaction(() => {
      this.db
        .prepare(
          "DELETE FROM events WHERE generation_id IN (SELECT id FROM generations WHERE session_id = ?)",
        )
        .run(id);
      this.db.prepare("DELETE FROM generations WHERE session_id = ?").run(id);
      this.db.prepare("DELETE FROM messages WHERE session_id = ?").run(id);
      this.db.prepare("DELETE FROM images WHERE session_id = ?").run(id);
      this.db.prepare("DELETE FROM sessions WHERE id = ?").run(id);
    })();
    for (const image of images) rmSync(this.imagePath(image.id), { force: true });
  }

  // Images.

  imagePath(id: string): string {
    return join(this.imageDir, `${id}.png`);
  }

  /** Writes the PNG file and its row; returns the new image id. */
  saveImage(
    image: RgbImage,
    meta: { owner: string; generationId: string | null; sessionId: string | null; role: ImageRole },
  ): string {
    const id = newId("img");
    const path = this.imagePath(id);
    writeFileSync(`${path}.tmp`, encodePng(image));
    renameSync(`${path}.tmp`, path);
    this.db
      .prepare(
        "INSERT INTO images (id, owner, generation_id, session_id, role, width, height, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      )
      .run(
        id,
        meta.owner,
        meta.generationId,
        meta.sessionId,
        meta.role,
        image.width,
        image.height,
        Date.now(),
      );
    return id;
  }

  getImage(id: string): ImageRow | null {
    return (this.db.prepare("SELECT * FROM images WHERE id = ?").get(id) as ImageRow | undefined) ?? null;
  }

  readImagePng(id: string): Buffer {
    return readFileSync(this.imagePath(id));
  }

  readImage(id: string): RgbImage {
    return decodePng(this.readImagePng(id)).image;
  }

  counts(): Record<string, number> {
    const count = (table: string) =>
      (this.db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    return {
      sessions: count("sessions"),
      generations: count("generations"),
      messages: count("messages"),
      images: count("images"),
    };
  }
}
