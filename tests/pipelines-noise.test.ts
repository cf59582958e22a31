/** Seeded noise (Philox4x32-10 + Box–Muller) and classifier-free guidance arithmetic. */
import { describe, expect, it } from "vitest";
import { applyGuidance, checkGuidance, fillModelInput, usesGuidance } from "../pipelines/guidance.ts";
import { BatchNoise, PhiloxNormal, philox4x32, randomSeed, STREAM, seedsFor } from "../pipelines/random.ts";
import { AtelierError } from "../src/errors.ts";

const hex = (a: Uint32Array) => [...a].map((x) => x.toString(16).padStart(8, "0")).join(" ");

describe("Philox4x32-10", () => {
  it("matches the Random123 known-answer vectors", () => {
    const out = new Uint32Array(4);
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0], out))).toBe("6627e8d5 e169c58d bc57ac4c 9b00dbd8");
    const ones = 0xffffffff;
    expect(hex(philox4x32([ones, ones, ones, ones], [ones, ones], out))).toBe(
      "408f276d 41c83b0e a20bc7c6 6d5451fd",
    );
    expect(
      hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], out)),
    ).toBe("d16cfe09 94fdcceb 5001e420 24126ea1");
  });
});

describe("seeded normals", () => {
  const draw = (seed: number, n: number, stream: number = STREAM.latents) => {
    const out = new Float32Array(n);
    new PhiloxNormal(seed, stream).fillNormal(out);
    return out;
  };

  it("the same seed gives bit-identical values, another seed or stream does not", () => {
    const a = draw(42, 4096);
    expect(Buffer.from(a.buffer).equals(Buffer.from(draw(42, 4096).buffer))).toBe(true);
    expect(Buffer.from(a.buffer).equals(Buffer.from(draw(43, 4096).buffer))).toBe(false);
    expect(Buffer.from(a.buffer).equals(Buffer.from(draw(42, 4096, STREAM.scheduler).buffer))).toBe(false);
  });

  it("is counter-based: chunked reads and random access agree with one long read", () => {
    const whole = draw(7, 101);
    const rng = new PhiloxNormal(7);
    const chunked = new Float32Array(101);
    rng.fillNormal(chunked, 0, 33);
    rng.fillNormal(chunked, 33, 68);
    expect([...chunked]).toEqual([...whole]);
    expect(Math.fround(new PhiloxNormal(7).at(57))).toBe(whole[57]);
  });

  it("is standard normal (moments over 200k samples)", () => {
    const x = draw(1234, 200_000);
    let mean = 0;
    for (const v of x) mean += v;
    mean /= x.length;
    let m2 = 0;
    let m4 = 0;
    let within1 = 0;
    for (const v of x) {
      m2 += (v - mean) ** 2;
      m4 += (v - mean) ** 4;
      if (Math.abs(v) < 1) within1++;
    }
    const variance = m2 / x.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.015);
    expect(Math.abs(m4 / x.length / variance ** 2 - 3)).toBeLessThan(0.05);
    expect(Math.abs(within1 / x.length - 0.6827)).toBeLessThan(0.005);
  });

  it("a batch gives image i the noise of seed i alone", () => {
    const batch = new Float32Array(3 * 16);
    new BatchNoise([5, 6, 99], STREAM.latents).fillNormal(batch);
    expect([...batch.subarray(16, 32)]).toEqual([...draw(6, 16)]);
    expect([...batch.subarray(32, 48)]).toEqual([...draw(99, 16)]);
  });

  it("per-image seeds: explicit list, seed+i, or a random uint32 base", () => {
    expect(seedsFor(3, 10)).toEqual([10, 11, 12]);
    expect(seedsFor(2, 0xffffffff)).toEqual([0xffffffff, 0]);
    expect(seedsFor(2, undefined, [8, 3])).toEqual([8, 3]);
    const random = seedsFor(2);
    expect(random[1]).toBe((random[0]! + 1) >>> 0);
    const r = randomSeed();
    expect(Number.isInteger(r) && r >= 0 && r <= 0xffffffff).toBe(true);
    expect(() => seedsFor(2, -1)).toThrow(AtelierError);
    expect(() => seedsFor(2, 1.5)).toThrow(/seed/);
    expect(() => seedsFor(2, undefined, [1])).toThrow(/seeds/);
  });
});

describe("classifier-free guidance", () => {
  it("ε = ε_u + s(ε_c − ε_u) over a [uncond | cond] batch", () => {
    const batched = Float32Array.from([1, 2, 3, 5, 2, 7]); // ε_u = [1,2,3], ε_c = [5,2,7]
    expect([...applyGuidance(batched, 7.5, new Float32Array(3))]).toEqual([31, 2, 33]);
    expect([...applyGuidance(batched, 1, new Float32Array(3))]).toEqual([5, 2, 7]);
    expect([...applyGuidance(batched, 0, new Float32Array(3))]).toEqual([1, 2, 3]);
  });

  it("guidance ≤ 1 runs the conditional half only", () => {
    expect(usesGuidance(0)).toBe(false);
    expect(usesGuidance(1)).toBe(false);
    expect(usesGuidance(1.5)).toBe(true);
    const latents = Float32Array.from([1, 2]);
    expect([...fillModelInput(latents, true, new Float32Array(4))]).toEqual([1, 2, 1, 2]);
    expect([...fillModelInput(latents, false, new Float32Array(2))]).toEqual([1, 2]);
  });

  it("rejects a negative or non-finite scale, naming the field", () => {
    expect(() => checkGuidance(-1)).toThrow(/guidance/);
    expect(() => checkGuidance(Number.NaN)).toThrow(/guidance/);
    expect(checkGuidance(7.5)).toBe(7.5);
  });
});
