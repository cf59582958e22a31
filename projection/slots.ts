/**
 * Object slots of a plan's tokens, the projection's second input (`slot_ids`): K for every token of the
 * entries "K …" under <LAYOUT>, <OBJECT> and <COLOR> (clamped to `slots` − 1), 0 for section tags,
 * separators and the scene-wide entries (style, background, lighting). With them the projection's learned
 * queries can gather one object — its place, shape and colour — into one conditioning token, which is how
 * the denoiser's own text encoder hands it a colour bound to its shape. training/projection.py
 * (`plan_slots`) computes the same for training.
 */
const ENTRY_SECTIONS = new Set(["<layout>", "<object>", "<color>"]);

/** Slot ids of the plan span's tokens (one word each, as the embedded planner tokenizes plans). */
export function planSlots(tokens: readonly string[], slots: number): number[] {
  let section = false;
  let slot = 0;
  let entryStart = false;
  return tokens.map((token) => {
    const word = token.trim().toLowerCase();
    if (word.startsWith("<")) {
      section = ENTRY_SECTIONS.has(word);
      slot = 0;
      entryStart = section;
      return 0;
    }
    if (section && word === ";") {
      slot = 0;
      entryStart = true;
      return 0;
    }
    if (entryStart) {
      slot = section && /^\d+$/.test(word) ? Math.min(Number(word), slots - 1) : 0;
      entryStart = false;
    }
    return slot;
  });
}
