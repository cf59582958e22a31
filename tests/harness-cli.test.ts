import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createGenerator } from "../evals/harness.ts";
import { decodePng } from "../pipelines/image.ts";

const atelier = (...args: string[]) =>
  spawnSync(process.execPath, ["bin/atelier.js", ...args], { encoding: "utf8", timeout: 60_000 });

const PROMPTS = [
  {
    id: "count-1",
    category: "counting",
    prompt: "three yellow stars",
    expect: { objects: [{ shape: "star", color: "yellow", count: 3 }] },
  },
  {
    id: "pos-1",
    category: "position",
    prompt: "a circle left of a square",
    expect: {
      objects: [{ shape: "circle" }, { shape: "square" }],
      relations: [{ a: 0, rel: "left_of", b: 1 }],
    },
    heldout: true,
  },
  {
    id: "edit-1",
    category: "edit",
    turns: ["a pink square on white", "now make the square blue"],
    expect: {
      objects: [{ shape: "square", color: "blue" }],
      absent: [{ shape: "square", color: "pink" }],
      background: "white",
    },
  },
];

function promptFile(lines: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "atelier-eval-"));
  const path = join(dir, "prompts.jsonl");
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

describe("atelier eval", () => {
  it("--mode oracle writes report.json, report.md and a contact sheet, and scores 1", () => {
    const prompts = promptFile(PROMPTS.map((p) => JSON.stringify(p)));
    const out = mkdtempSync(join(tmpdir(), "atelier-eval-out-"));
    const result = atelier(
      "eval",
      "--prompts",
      prompts,
      "--mode",
      "oracle",
      "--images-per-prompt",
      "2",
      "--seed",
      "3",
      "--out",
      out,
    );
    expect(result.stderr).not.toContain("error");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("overall 1.0000");
    const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(report.overall).toBe(1);
    expect(Object.keys(report.categories).sort()).toEqual(["counting", "edit", "position"]);
    expect(report.categories.counting).toMatchObject({ accuracy: 1, n: 1, images: 2 });
    expect(report.held_out).toMatchObject({ accuracy: 1, n: 1 });
    expect(report.seen).toMatchObject({ accuracy: 1, n: 2 });
    expect(report.prompts.map((p: { id: string }) => p.id)).toEqual(["count-1", "pos-1", "edit-1"]);
    expect(report.prompts[2].text).toEqual(PROMPTS[2]!.turns);
    const markdown = readFileSync(join(out, "report.md"), "utf8");
    expect(markdown).toContain("| counting | 100.0% | 1 | 2 |");
    expect(markdown).toContain("| held-out | 100.0% | 1 | 2 |");
    const { image } = decodePng(readFileSync(join(out, report.contact_sheet)));
    // 6 tiles of 64 px in one row (whole prompts per row), 2 px gaps.
    expect([image.width, image.height]).toEqual([6 * 66 + 2, 66 + 2]);
    for (const category of ["counting", "edit", "position"]) {
      const sheet = decodePng(readFileSync(join(out, `contact-sheet-${category}.png`))).image;
      expect([sheet.width, sheet.height]).toEqual([2 * 66 + 2, 66 + 2]); // the category's 2 images
    }
  });

  it("--categories keeps only those categories' prompts, and names an unknown one", () => {
    const prompts = promptFile(PROMPTS.map((p) => JSON.stringify(p)));
    const out = mkdtempSync(join(tmpdir(), "atelier-eval-out-"));
    const only = atelier("eval", "--prompts", prompts, "--categories", "edit,counting", "--out", out);
    expect(only.status).toBe(0);
    const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(report.prompts.map((p: { id: string }) => p.id)).toEqual(["count-1", "edit-1"]);
    const bad = atelier("eval", "--prompts", prompts, "--categories", "shading", "--out", out);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("categories: ");
    expect(bad.stderr).toContain('no category "shading"');
  });

  it("names the line and field of a bad prompt file", () => {
    const good = JSON.stringify(PROMPTS[0]);
    const malformed = atelier("eval", "--prompts", promptFile([good, "{not json"]), "--out", tmpdir());
    expect(malformed.status).toBe(2);
    expect(malformed.stderr).toMatch(/line 2/);
    const hexagon = JSON.stringify({ ...PROMPTS[0], expect: { objects: [{ shape: "hexagon" }] } });
    const unknown = atelier("eval", "--prompts", promptFile([hexagon]), "--out", tmpdir());
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/line 1: expect\.objects\.0\.shape/);
  });

  it("refuses an unknown mode (exit 2)", () => {
    const prompts = promptFile([JSON.stringify(PROMPTS[0])]);
    const bad = atelier("eval", "--prompts", prompts, "--mode", "dream", "--out", tmpdir());
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("mode: must be one of oracle, oracle-vae, native, plan-text, plan, agent");
  });

  it("a mode with no registered generator fails with a clear message and a server-side status (exit 1)", async () => {
    // Nothing registers generators in this process (src/commands/eval.ts does, for the CLI).
    const error = await createGenerator("agent").catch((e: unknown) => e);
    expect(error).toMatchObject({
      status: 501,
      message: "mode agent needs the critique loop (planner, projection, diffusion): not available yet",
    });
  });

  it("--detector-report prints accuracies and confusion tables", () => {
    const result = atelier("eval", "--detector-report", "--n", "4", "--seed", "2");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("# Oracle detector on 4 random rendered scenes");
    for (const attribute of [
      "shape",
      "color",
      "size",
      "count",
      "position",
      "background",
      "style",
      "lighting",
    ]) {
      expect(result.stdout).toContain(`## ${attribute} (rows: truth, columns: detected)`);
    }
  });
});
