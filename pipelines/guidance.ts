/**
 * Classifier-free guidance (Ho & Salimans 2022): ε̂ = ε_u + s·(ε_c − ε_u).
 *
 * The conditional and unconditional passes share ONE denoiser call: the batch is [uncond × B | cond × B]
 * (diffusers' order), so the model output's first half is ε_u and its second half ε_c. As in diffusers,
 * guidance is active only for s > 1; s = 1 is the plain conditional model and s = 0 (SD-Turbo, LCM) means
 * "no guidance", so for s ≤ 1 only the conditional half is run — half the denoiser compute.
 */
import { invalid } from "../src/errors.ts";

export function checkGuidance(scale: number): number {
  if (typeof scale !== "number" || !Number.isFinite(scale) || scale < 0 || scale > 100)
    throw invalid("guidance", `must be a number in [0, 100], got ${scale}`);
  return scale;
}

/** Whether a guidance scale needs the unconditional half (diffusers: do_classifier_free_guidance = s > 1). */
export function usesGuidance(scale: number): boolean {
  return scale > 1;
}

/**
 * Combines a batched model output [ε_u (n values) | ε_c (n values)] into `out` (n values):
 * out = ε_u + s·(ε_c − ε_u).
 */
export function applyGuidance(batched: Float32Array, scale: number, out: Float32Array): Float32Array {
  const n = out.length;
  if (batched.length !== 2 * n)
    throw invalid("modelOutput", `expected ${2 * n} values ([uncond | cond]), got ${batched.length}`);
  for (let i = 0; i < n; i++) {
    const u = batched[i]!;
    out[i] = u + scale * (batched[n + i]! - u);
  }
  return out;
}

/** Writes `latents` once (no guidance) or twice ([uncond | cond] halves) into the denoiser's input batch. */
export function fillModelInput(latents: Float32Array, guided: boolean, out: Float32Array): Float32Array {
  out.set(latents, 0);
  if (guided) out.set(latents, latents.length);
  return out;
}
