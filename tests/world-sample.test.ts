import { describe, expect, it } from "vitest";
import { createRng } from "../evals/rng.ts";
import {
  canonicalJson,
  HELD_OUT_COLOR_SHAPES,
  HELD_OUT_RELATIONS,
  isHeldOut,
  sampleScene,
  sceneHash,
  sceneSplit,
} from "../evals/sample.ts";
import {
  BACKGROUNDS,
  COLORS,
  LIGHTINGS,
  POSITIONS,
  parseScene,
  RELATIONS,
  type Scene,
  SHAPES,
  SIZES,
  STYLES,
} from "../evals/scene.ts";

describe("createRng", () => {
  it("repeats per seed, differs across seeds, and stays in range", () => {
    const a = createRng(42);
    const b = createRng(42);
    const seq = Array.from({ length: 50 }, () => a.next());
    expect(Array.from({ length: 50 }, () => b.next())).toEqual(seq);
    expect(createRng(43).next()).not.toBe(seq[0]);
    const r = createRng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const x = r.int(6);
      expect(Number.isInteger(x) && x >= 0 && x < 6).toBe(true);
      seen.add(x);
    }
    expect(seen.size).toBe(6);
    expect(r.shuffle([1, 2, 3, 4, 5]).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(() => r.pick([])).toThrow(RangeError);
  });
});

describe("sampleScene", () => {
  it("produces valid scenes over the whole vocabulary", () => {
    const rng = createRng(3);
    const seen = new Set<string>();
    for (let i = 0; i < 1500; i++) {
      const scene = sampleScene(rng);
      expect(parseScene(scene)).toEqual(scene);
      seen.add(`groups:${scene.objects.length}`);
      seen.add(`style:${scene.style}`);
      seen.add(`background:${scene.background}`);
      seen.add(`lighting:${scene.lighting}`);
      const kinds = new Set<string>();
      for (const group of scene.objects) {
        kinds.add(`${group.color} ${group.shape}`);
        seen.add(`shape:${group.shape}`);
        seen.add(`color:${group.color}`);
        seen.add(`size:${group.size}`);
        seen.add(`count:${group.count}`);
        if (group.placement.kind === "grid") seen.add(`position:${group.placement.position}`);
        if (group.placement.kind === "relation") {
          seen.add(`relation:${group.placement.relation}`);
          seen.add(group.placement.of > scene.objects.indexOf(group) ? "subject-first" : "anchor-first");
        }
        seen.add(`placement:${group.placement.kind}`);
      }
      expect(kinds.size).toBe(scene.objects.length);
    }
    const expected = [
      ...[1, 2, 3, 4].map((n) => `groups:${n}`),
      ...[1, 2, 3, 4].map((n) => `count:${n}`),
      ...STYLES.map((v) => `style:${v}`),
      ...BACKGROUNDS.map((v) => `background:${v}`),
      ...LIGHTINGS.map((v) => `lighting:${v}`),
      ...SHAPES.map((v) => `shape:${v}`),
      ...COLORS.map((v) => `color:${v}`),
      ...SIZES.map((v) => `size:${v}`),
      ...POSITIONS.map((v) => `position:${v}`),
      ...RELATIONS.map((v) => `relation:${v}`),
      "placement:free",
      "placement:grid",
      "placement:relation",
      "subject-first",
      "anchor-first",
    ];
    expect(expected.filter((key) => !seen.has(key))).toEqual([]);
  });

  it("covers every shape, colour, style, background and lighting in the 64 scenes of `world sample`", () => {
    const rng = createRng(1);
    const scenes = Array.from({ length: 64 }, (_, i) => sampleScene(rng, { cycle: i }));
    const shapes = new Set(scenes.flatMap((s) => s.objects.map((g) => g.shape)));
    const colors = new Set(scenes.flatMap((s) => s.objects.map((g) => g.color)));
    expect([...shapes].sort()).toEqual([...SHAPES].sort());
    expect([...colors].sort()).toEqual([...COLORS].sort());
    expect(new Set(scenes.map((s) => s.style)).size).toBe(STYLES.length);
    expect(new Set(scenes.map((s) => s.background)).size).toBe(BACKGROUNDS.length);
    expect(new Set(scenes.map((s) => s.lighting)).size).toBe(LIGHTINGS.length);
  });

  it("keeps splits disjoint by scene hash and held-out compositions out of train", () => {
    const rng = createRng(9);
    const hashes = { train: new Set<string>(), val: new Set<string>(), test: new Set<string>() };
    let heldOutInEval = 0;
    for (const split of ["train", "val", "test"] as const) {
      for (let i = 0; i < (split === "train" ? 600 : 150); i++) {
        const scene = sampleScene(rng, { split });
        expect(sceneSplit(scene)).toBe(split);
        if (split === "train") expect(isHeldOut(scene)).toEqual([]);
        else if (isHeldOut(scene).length > 0) heldOutInEval++;
        hashes[split].add(sceneHash(scene));
      }
    }
    for (const h of hashes.train) expect(hashes.val.has(h) || hashes.test.has(h)).toBe(false);
    for (const h of hashes.val) expect(hashes.test.has(h)).toBe(false);
    // Val and test are where held-out compositions get measured, so they must occur there.
    expect(heldOutInEval).toBeGreaterThan(20);
  });

  it("hashes the canonical JSON, independent of key order", () => {
    const scene: Scene = parseScene({
      objects: [{ shape: "star", color: "red", size: "small", count: 1, placement: { kind: "free" } }],
      background: "gray",
      style: "flat",
      lighting: "dim",
    });
    const reordered = JSON.parse(
      '{"lighting":"dim","style":"flat","background":"gray","objects":[{"placement":{"kind":"free"},"count":1,"size":"small","color":"red","shape":"star"}]}',
    );
    expect(canonicalJson(reordered)).toBe(canonicalJson(scene));
    expect(sceneHash(reordered)).toBe(sceneHash(scene));
    expect(sceneHash(scene)).toMatch(/^[0-9a-f]{64}$/);
    expect(sceneHash({ ...scene, lighting: "warm" })).not.toBe(sceneHash(scene));
  });

  it("reports held-out colour–shape pairs and relations in either phrasing", () => {
    const base = { background: "white", style: "flat", lighting: "daylight" } as const;
    const pair = HELD_OUT_COLOR_SHAPES[0]!;
    expect(
      isHeldOut(
        parseScene({
          ...base,
          objects: [{ ...pair, size: "small", count: 2, placement: { kind: "free" } }],
        }),
      ),
    ).toEqual([`${pair.color} ${pair.shape}`]);
    const { a, relation, b } = HELD_OUT_RELATIONS[0]!;
    const inverse = { left_of: "right_of", right_of: "left_of", above: "below", below: "above" } as const;
    const anchorFirst = parseScene({
      ...base,
      objects: [
        { shape: a, color: "orange", size: "small", count: 1, placement: { kind: "free" } },
        {
          shape: b,
          color: "orange",
          size: "small",
          count: 1,
          placement: { kind: "relation", relation: inverse[relation], of: 0 },
        },
      ],
    });
    expect(isHeldOut(anchorFirst)).toEqual([`${a} ${relation} ${b}`]);
    const unrelated = parseScene({
      ...base,
      objects: [
        { shape: a, color: "orange", size: "small", count: 1, placement: { kind: "free" } },
        {
          shape: b,
          color: "orange",
          size: "small",
          count: 1,
          placement: { kind: "relation", relation, of: 0 },
        },
      ],
    });
    expect(isHeldOut(unrelated)).toEqual([]);
  });

  it("rejects bad scenes with an error naming the field", () => {
    const base = { background: "white", style: "flat", lighting: "daylight" };
    const group = { shape: "star", color: "red", size: "small", count: 1, placement: { kind: "free" } };
    expect(() => parseScene({ ...base, objects: [{ ...group, shape: "hexagon" }] })).toThrow(
      /scene\.objects\.0\.shape/,
    );
    expect(() => parseScene({ ...base, objects: [group, { ...group, color: "teal" }] })).toThrow(
      /scene\.objects\.1\.color/,
    );
    expect(() => parseScene({ ...base, objects: [group, group, group, group, group] })).toThrow(
      /scene\.objects: .*4/,
    );
  });
});
