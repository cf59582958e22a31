/**
 * Seeded Gaussian noise for latents and stochastic scheduler steps.
 *
 * Generator: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3",
 * SC 2011), a counter-based RNG: block k of a stream is philox(counter = (k_lo, k_hi, stream, 0),
 * key = (seed, 0)), 10 rounds with the paper's multipliers 0xD2511F53 / 0xCD9E8D57 and Weyl key
 * increments 0x9E3779B9 / 0xBB67AE85. Every value depends only on (seed, stream, index), so the same
 * seed gives bit-identical noise whatever else ran before, and a batch can give each image its own seed.
 *
 * Normals: each block's four 32-bit words make two 53-bit uniforms u₁, u₂ ∈ (0, 1); Box–Muller turns them
 * into z₀ = √(−2 ln u₁)·cos(2πu₂) and z₁ = √(−2 ln u₁)·sin(2πu₂). Normal n of a stream is z_(n mod 2) of
 * block ⌊n/2⌋, rounded to float32.
 */
import { invalid } from "../src/errors.ts";

/** Anything that can fill a buffer with N(0, 1) samples. */
export interface NoiseSource {
  fillNormal(out: Float32Array, offset?: number, length?: number): void;
}

/** Separate streams per purpose, so that e.g. the VAE's sampling noise never shifts the latent noise. */
export const STREAM = { latents: 0, vae: 1, scheduler: 2 } as const;

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32s (exact: every partial product fits in a double). */
function mulhi(a: number, b: number): number {
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const lh = aL * bH;
  const hl = aH * bL;
  const mid = ((aL * bL) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (aH * bH + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** One Philox4x32-10 block: `out` ← philox(ctr, key). */
export function philox4x32(ctr: ArrayLike<number>, key: ArrayLike<number>, out: Uint32Array): Uint32Array {
  let c0 = ctr[0]! >>> 0;
  let c1 = ctr[1]! >>> 0;
  let c2 = ctr[2]! >>> 0;
  let c3 = ctr[3]! >>> 0;
  let k0 = key[0]! >>> 0;
  let k1 = key[1]! >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

const TWO_PI = 2 * Math.PI;
const TWO_POW_53 = 9007199254740992;

/** A uniform in (0, 1) from 27 + 26 bits of two words; never 0, so ln u is finite. */
function uniform53(a: number, b: number): number {
  return ((a >>> 5) * 67108864 + (b >>> 6) + 0.5) / TWO_POW_53;
}

/** A stream of standard normals for one (seed, stream). Sequential reads; `position` is the next index. */
export class PhiloxNormal implements NoiseSource {
  readonly seed: number;
  readonly stream: number;
  position = 0;
  private readonly key: Uint32Array;
  private readonly ctr = new Uint32Array(4);
  private readonly block = new Uint32Array(4);
  private cachedBlock = -1;
  private z0 = 0;
  private z1 = 0;

  constructor(seed: number, stream = 0) {
    this.seed = checkSeed(seed, "seed");
    this.stream = stream >>> 0;
    this.key = Uint32Array.of(this.seed, 0);
  }

  /** The normal at absolute index n of this stream (random access; does not move `position`). */
  at(n: number): number {
    const b = Math.floor(n / 2);
    if (b !== this.cachedBlock) {
      this.ctr[0] = b >>> 0;
      this.ctr[1] = Math.floor(b / 4294967296) >>> 0;
      this.ctr[2] = this.stream;
      this.ctr[3] = 0;
      philox4x32(this.ctr, this.key, this.block);
      const r = Math.sqrt(-2 * Math.log(uniform53(this.block[0]!, this.block[1]!)));
      const theta = TWO_PI * uniform53(this.block[2]!, this.block[3]!);
      this.z0 = r * Math.cos(theta);
      this.z1 = r * Math.sin(theta);
      this.cachedBlock = b;
    }
    return n % 2 === 0 ? this.z0 : this.z1;
  }

  fillNormal(out: Float32Array, offset = 0, length = out.length - offset): void {
    for (let i = 0; i < length; i++) out[offset + i] = this.at(this.position + i);
    this.position += length;
  }
}

/**
 * Noise for a batch: image i's slice of every buffer comes from its own seed, so image i is the same
 * whether it was generated alone or in a batch.
 */
export class BatchNoise implements NoiseSource {
  readonly sources: PhiloxNormal[];

  constructor(seeds: number[], stream: number) {
    this.sources = seeds.map((s) => new PhiloxNormal(s, stream));
  }

  fillNormal(out: Float32Array, offset = 0, length = out.length - offset): void {
    const n = this.sources.length;
    if (length % n !== 0)
      throw invalid("noise", `buffer of ${length} values does not split into ${n} images`);
    const per = length / n;
    for (let i = 0; i < n; i++) this.sources[i]!.fillNormal(out, offset + i * per, per);
  }
}

export function checkSeed(seed: number, name: string): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw invalid(name, `must be an integer in [0, 4294967295], got ${seed}`);
  return seed;
}

/** A fresh uint32 seed from the OS's CSPRNG (used when the caller gives none; always reported back). */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/**
 * Per-image seeds: an explicit list wins; otherwise seed, seed+1, … (mod 2³²) from the given or a random
 * base seed. Image i with seed s is reproducible alone by asking for seed s.
 */
export function seedsFor(count: number, seed?: number, seeds?: number[]): number[] {
  if (seeds !== undefined) {
    if (!Array.isArray(seeds) || seeds.length !== count)
      throw invalid(
        "seeds",
        `must list one seed per image (${count}), got ${Array.isArray(seeds) ? seeds.length : typeof seeds}`,
      );
    return seeds.map((s, i) => checkSeed(s, `seeds[${i}]`));
  }
  const base = seed === undefined ? randomSeed() : checkSeed(seed, "seed");
  return Array.from({ length: count }, (_, i) => (base + i) >>> 0);
}
