import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { datasetItem, exportDataset, IMAGE_BYTES, readDataset } from "../evals/dataset.ts";
import { printPlan } from "../evals/language/index.ts";
import { layoutScene } from "../evals/layout.ts";
import { renderScene } from "../evals/render.ts";
import { isHeldOut, sceneSplit } from "../evals/sample.ts";
import { parseScene } from "../evals/scene.ts";
import { decodePng } from "../pipelines/image.ts";

const root = mkdtempSync(join(tmpdir(), "atelier-world-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const atelier = (...args: string[]) =>
  spawnSync(process.execPath, ["bin/atelier.js", ...args], { encoding: "utf8", timeout: 60_000 });

describe("dataset export", () => {
  it("writes index, shards and records that read back and re-render exactly", () => {
    const out = join(root, "val");
    const index = exportDataset({ split: "val", n: 23, seed: 4, out, shardSize: 10 });
    expect(index.shards.map((s) => s.n)).toEqual([10, 10, 3]);
    const onDisk = JSON.parse(readFileSync(join(out, "index.json"), "utf8"));
    expect(onDisk).toMatchObject({
      format: "atelier-shapes-v1",
      split: "val",
      n: 23,
      seed: 4,
      image: { height: 64, width: 64, channels: 3 },
      shards: [
        { images: "images-00000.u8", records: "records-00000.jsonl", n: 10 },
        { images: "images-00001.u8", records: "records-00001.jsonl", n: 10 },
        { images: "images-00002.u8", records: "records-00002.jsonl", n: 3 },
      ],
    });
    expect(onDisk.heldOut.colorShapes.length).toBeGreaterThan(0);
    const { shards } = readDataset(out);
    const ids = new Set<string>();
    for (const { images, records } of shards) {
      expect(images.length).toBe(records.length * IMAGE_BYTES);
      records.forEach((record, k) => {
        expect(Object.keys(record).sort()).toEqual([
          "captions",
          "id",
          "layout",
          "plan",
          "request",
          "scene",
          "seed",
        ]);
        ids.add(record.id);
        const scene = parseScene(record.scene);
        expect(sceneSplit(scene)).toBe("val");
        expect(record.plan).toBe(printPlan(scene));
        expect(record.captions.length).toBeGreaterThan(1);
        const layout = layoutScene(scene, record.seed);
        expect(record.layout).toEqual(
          layout.instances.map(({ shape, color, size, cx, cy, radius }) => ({
            shape,
            color,
            size,
            cx,
            cy,
            radius,
          })),
        );
        const bytes = images.subarray(k * IMAGE_BYTES, (k + 1) * IMAGE_BYTES);
        expect(Buffer.from(renderScene(scene, layout, record.seed).data).equals(Buffer.from(bytes))).toBe(
          true,
        );
      });
    }
    expect(ids.size).toBe(23);
  });

  it("is deterministic by seed and independent of sharding", () => {
    const a = exportDataset({ split: "train", n: 12, seed: 8, out: join(root, "a"), shardSize: 5 });
    exportDataset({ split: "train", n: 12, seed: 8, out: join(root, "b"), shardSize: 12 });
    const bytes = (dir: string, names: string[]) =>
      Buffer.concat(names.map((name) => readFileSync(join(root, dir, name))));
    expect(
      bytes(
        "a",
        a.shards.map((s) => s.images),
      ).equals(bytes("b", ["images-00000.u8"])),
    ).toBe(true);
    expect(
      bytes(
        "a",
        a.shards.map((s) => s.records),
      ).equals(bytes("b", ["records-00000.jsonl"])),
    ).toBe(true);
    const other = datasetItem("train", 9, 0);
    expect(other.record.id).not.toBe(datasetItem("train", 8, 0).record.id);
    for (let i = 0; i < 12; i++) expect(isHeldOut(datasetItem("train", 8, i).record.scene)).toEqual([]);
  });

  it("rejects bad options naming the field", () => {
    expect(() => exportDataset({ split: "dev", n: 1, seed: 0, out: join(root, "x") })).toThrow(/^split: /);
    expect(() => exportDataset({ split: "val", n: 0, seed: 0, out: join(root, "x") })).toThrow(/^n: /);
    expect(() => exportDataset({ split: "val", n: 1, seed: -1, out: join(root, "x") })).toThrow(/^seed: /);
    expect(() => exportDataset({ split: "val", n: 1, seed: 0, out: join(root, "x"), shardSize: 0 })).toThrow(
      /^shard-size: /,
    );
  });
});

describe("atelier world", () => {
  it("exports, samples a contact sheet, and renders scene files; bad lines name file, line and field", () => {
    const out = join(root, "cli-export");
    const exported = atelier("world", "export", "--split", "test", "--n", "3", "--seed", "2", "--out", out);
    expect(exported.status).toBe(0);
    expect(readDataset(out).index.n).toBe(3);

    const sample = join(root, "cli-sample");
    expect(atelier("world", "sample", "--n", "8", "--seed", "1", "--out", sample).status).toBe(0);
    const sheet = decodePng(readFileSync(join(sample, "contact-sheet.png"))).image;
    expect(sheet.width).toBe(8 * (128 + 2) + 2);
    expect(readFileSync(join(sample, "scenes.jsonl"), "utf8").trim().split("\n")).toHaveLength(8);

    const scenes = join(root, "scenes.jsonl");
    const good = JSON.stringify({
      objects: [
        {
          shape: "star",
          color: "red",
          size: "large",
          count: 1,
          placement: { kind: "grid", position: "left" },
        },
      ],
      background: "sky",
      style: "flat",
      lighting: "daylight",
    });
    const bad = good.replace('"red"', '"teal"');
    writeFileSync(scenes, `${good}\n${bad}\n`);
    const failed = atelier("world", "render", "--scenes", scenes, "--out", join(root, "render"));
    expect(failed.status).toBe(2);
    expect(failed.stderr).toContain("scenes.jsonl:2.objects.0.color");

    const bogus = atelier("world", "export", "--split", "dev", "--n", "3", "--out", join(root, "nope"));
    expect(bogus.status).toBe(2);
    expect(bogus.stderr).toContain("split");
    expect(existsSync(join(root, "nope", "index.json"))).toBe(false);
  });
});
