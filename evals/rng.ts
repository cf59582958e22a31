/**
 * Seeded pseudo-random numbers for the shapes world (layout, renderer texture, sampler, language, eval).
 * mulberry32: 32-bit state, fast, good enough for procedural data, and identical on every platform, so a
 * seed names the same dataset everywhere. Seeds are mixed with splitmix32 so that nearby seeds (1, 2, 3…)
 * give unrelated streams.
 */

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** A uniformly chosen element; throws on an empty array. */
  pick<T>(items: readonly T[]): T;
  /** A shuffled copy (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[];
  /** True with probability p. */
  chance(p: number): boolean;
  /** An independent generator derived from this one's next output (for sub-tasks that must not shift it). */
  fork(): Rng;
}

/** splitmix32 finaliser: a bijective 32-bit mix. */
export function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Folds a list of integers (e.g. a dataset seed and an item index) into one 32-bit seed. */
export function deriveSeed(...parts: number[]): number {
  let h = 0x243f6a88;
  for (const part of parts) {
    h = mix32(h ^ (part >>> 0));
    // Seeds beyond 2^32 keep their high bits.
    h = mix32(h ^ Math.floor(part / 0x100000000));
  }
  return h;
}

export function createRng(seed: number): Rng {
  if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
  let state = deriveSeed(Math.trunc(seed));
  const next = (): number => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    pick<T>(items: readonly T[]): T {
      if (items.length === 0) throw new RangeError("pick from an empty array");
      return items[int(items.length)]!;
    },
    shuffle<T>(items: readonly T[]): T[] {
      const out = items.slice();
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(i + 1);
        const tmp = out[i]!;
        out[i] = out[j]!;
        out[j] = tmp;
      }
      return out;
    },
    chance: (p: number): boolean => next() < p,
    fork: (): Rng => createRng(Math.floor(next() * 4294967296)),
  };
}
