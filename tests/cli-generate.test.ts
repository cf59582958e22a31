/**
 * `atelier generate` and `atelier chat` as child processes on the tiny fixtures: the PNG, the seed in the
 * trace, plain progress lines when piped, usage errors (exit 2), and a scripted chat session.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodePng } from "../pipelines/image.ts";
import { run as generate } from "../src/commands/generate.ts";
import { fixtureModels, removeDir } from "./service-harness.ts";

let models: string;
let out: string;

beforeAll(() => {
  models = fixtureModels();
  out = mkdtempSync(join(tmpdir(), "atelier-cli-"));
});

afterAll(() => {
  removeDir(models);
  removeDir(out);
});

const atelier = (args: string[], input?: string) =>
  spawnSync(process.execPath, ["bin/atelier.js", ...args], {
    encoding: "utf8",
    timeout: 60_000,
    input,
    env: { ...process.env, ATELIER_THREADS: "1" },
  });

describe("atelier generate", () => {
  it("writes a PNG and a trace with the requested seed; progress as plain lines when piped", () => {
    const png = join(out, "star.png");
    const trace = join(out, "star.json");
    const result = atelier([
      "generate",
      "a red star at the top left",
      "-o",
      png,
      "--seed",
      "1234",
      "--steps",
      "3",
      "--sampler",
      "euler",
      "--trace",
      trace,
      "--models",
      models,
    ]);
    expect(result.stderr).not.toContain("error");
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^seed 1234\n/);
    expect(result.stdout).toContain(`wrote ${png}`);
    expect(result.stderr.split("\n")).toEqual(
      expect.arrayContaining(["round 1 planning", "round 1 step 1/3", "round 1 step 3/3"]),
    );
    expect(result.stderr).not.toContain("\x1b[");
    const { image } = decodePng(readFileSync(png));
    expect([image.width, image.height]).toEqual([64, 64]);
    const recorded = JSON.parse(readFileSync(trace, "utf8"));
    expect(recorded.seed).toBe(1234);
    expect(recorded.seeds).toEqual([1234]);
    expect(recorded.request).toMatchObject({ prompt: "a red star at the top left", seed: 1234, steps: 3 });
    expect(recorded.rounds[0]).toMatchObject({
      round: 1,
      mode: "txt2img",
      seeds: [1234],
      settings: { steps: 3, sampler: "euler" },
      images: ["star.round1.png"],
    });
    expect(recorded.plans[0]).toBe(recorded.rounds[0].plan);
    // The round's image is the one written (one round: the same pixels).
    expect(readFileSync(join(out, "star.round1.png")).equals(readFileSync(png))).toBe(true);
  });

  it("prints usage and exits 2 on a wrong flag", () => {
    const flag = atelier(["generate", "a star", "-o", join(out, "x.png"), "--stepz", "3"]);
    expect(flag.status).toBe(2);
    expect(flag.stderr).toContain("Unknown option '--stepz'");
    expect(flag.stderr).toContain('atelier generate "request" -o out.png');
    expect(existsSync(join(out, "x.png"))).toBe(false);
  });

  it("names the flag of a bad value before loading any model (cli.ts maps it to exit 2)", async () => {
    const args = ["a star", "-o", join(out, "x.png"), "--models", "/nonexistent"];
    await expect(generate([...args, "--guidance", "25"])).rejects.toMatchObject({
      status: 400,
      param: "guidance",
      message: "guidance: must be at most 20, got 25",
    });
    await expect(generate([...args, "--seed=4294967296"])).rejects.toMatchObject({ param: "seed" });
    await expect(generate(["a star"])).rejects.toMatchObject({ param: "out" });
    await expect(generate(args)).rejects.toMatchObject({ param: "models" });
  });
});

describe("atelier chat", () => {
  it("makes an image, edits it, undoes the edit and saves the current image", () => {
    const dir = join(out, "chat");
    const saved = join(out, "saved.png");
    const script = ["a pink square", "now make the square blue", "/undo", `/save ${saved}`, "/quit", ""];
    const result = atelier(
      ["chat", "--models", models, "--steps", "3", "--seed", "9", "--out-dir", dir],
      script.join("\n"),
    );
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`${join(dir, "turn-1.png")}  seed 9`);
    expect(result.stdout).toContain(`${join(dir, "turn-2.png")}  seed 9`);
    expect(result.stdout).toContain(`back to ${join(dir, "turn-1.png")}`);
    const turn1 = readFileSync(join(dir, "turn-1.png"));
    const turn2 = readFileSync(join(dir, "turn-2.png"));
    expect(turn1.equals(turn2)).toBe(false);
    // After /undo the current image is the first one again.
    expect(readFileSync(saved).equals(turn1)).toBe(true);
    expect(result.stderr).toContain("round 1 step 3/3");
  });
});
