import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const atelier = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ["bin/atelier.js", "train", ...args], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, ...env },
  });

describe("atelier train", () => {
  it("rejects an unknown stage with exit code 2, naming the stages", () => {
    const result = atelier(["bogus"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("stage: expected one of vae, ldm, export");
  });

  it("runs training/<stage>.py with the arguments, streams its output and passes its exit code through", () => {
    const dir = mkdtempSync(join(tmpdir(), "atelier-train-"));
    const python = join(dir, "python");
    writeFileSync(python, '#!/bin/sh\necho "script=$(basename "$1")"; shift; echo "args=$*"; exit 3\n');
    chmodSync(python, 0o755);
    const result = atelier(["ldm", "--config", "tiny", "--resume"], { ATELIER_PYTHON: python });
    expect(result.stdout).toContain("script=ldm.py");
    expect(result.stdout).toContain("args=--config tiny --resume");
    expect(result.status).toBe(3);
  });
});
