import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/** Starts the real CLI (`atelier serve`) on a loopback port and talks to it over HTTP. */
describe("atelier serve", () => {
  let server: ChildProcess;
  const port = 18787 + Math.floor(Math.random() * 1000);

  beforeAll(async () => {
    server = spawn(process.execPath, ["bin/atelier.js", "serve", "--port", String(port)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    server.stdout!.setEncoding("utf8");
    while (!output.includes("listening")) {
      const [chunk] = (await once(server.stdout!, "data")) as [string];
      output += chunk;
    }
  });

  afterAll(async () => {
    server.kill("SIGTERM");
    await once(server, "exit");
  });

  it("answers GET /health with status, version and models", async () => {
    const response = await fetch(`http://127.0.0.1:${port}/health`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      status: string;
      version: string;
      models: Record<string, unknown>;
    };
    expect(body.status).toBe("ok");
    expect(body.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(Object.keys(body.models)).toEqual(expect.arrayContaining(["ldm", "planner", "projection"]));
  });

  it("answers unknown routes with 404", async () => {
    const response = await fetch(`http://127.0.0.1:${port}/nope`);
    expect(response.status).toBe(404);
  });
});
