import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

const atelier = (...args: string[]) =>
  spawnSync(process.execPath, ["bin/atelier.js", ...args], { encoding: "utf8", timeout: 30_000 });

describe("atelier CLI", () => {
  it("prints usage and exits 2 for an unknown command", () => {
    const result = atelier("frobnicate");
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("unknown command: frobnicate");
  });

  it("prints usage and exits 2 for an unknown flag", () => {
    const result = atelier("serve", "--bogus");
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("atelier serve");
  });

  it("prints a command's help and exits 0", () => {
    const result = atelier("serve", "--help");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("--port");
  });
});
