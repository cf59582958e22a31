/**
 * Preservation of an edit: the objects the last turn of a dialogue did not touch keep their shape, colour
 * and position. Judged with the oracle detector on the images before and after the last turn.
 *
 * Which objects the edit left alone is read from the prompt's `expect` block (how evals/language/
 * make-prompts.ts writes edit expectations): an object seen before the last turn is *untouched* when the
 * final expectation still lists its shape and colour, does not mark that kind absent, does not ask for a
 * size (resize edits add one), does not recount it (`exact_count` with a count), and places it, if at all,
 * in the cell where it already was (a move names another). It is *kept* when the image after the edit
 * shows an object of the same shape and colour in the same grid cell. Objects that were not in the image
 * before the edit are not judged: this measures what the edit destroyed, not what the first turn missed.
 * In three-turn dialogues the expectation also reflects the middle turn, so an object resized or recounted
 * there is left out too (a slight under-count, never a wrong judgement).
 */
import type { DetectedObject, Detection } from "./detector.ts";
import type { Expect } from "./expect.ts";
import { CANVAS, positionAt } from "./layout.ts";

export interface Preservation {
  /** Untouched objects before the edit. */
  total: number;
  /** Of those, how many the image after the edit still shows (same shape, colour and cell). */
  kept: number;
}

const cellOf = (o: DetectedObject, width: number, height: number) =>
  positionAt((o.cx * CANVAS) / width, (o.cy * CANVAS) / height);

function untouched(expect: Expect, o: DetectedObject, width: number, height: number): boolean {
  if ((expect.absent ?? []).some((a) => a.shape === o.shape && (a.color ?? o.color) === o.color))
    return false;
  return expect.objects.some(
    (e) =>
      e.shape === o.shape &&
      e.color === o.color &&
      e.size === undefined &&
      !(expect.exact_count && e.count !== undefined) &&
      (e.position === undefined || e.position === cellOf(o, width, height)),
  );
}

export function preservation(
  expect: Expect,
  before: Detection,
  after: Detection,
  width: number,
  height: number,
): Preservation {
  const judged = before.objects.filter((o) => untouched(expect, o, width, height));
  const free = [...after.objects];
  let kept = 0;
  for (const o of judged) {
    const cell = cellOf(o, width, height);
    const k = free.findIndex(
      (a) => a.shape === o.shape && a.color === o.color && cellOf(a, width, height) === cell,
    );
    if (k < 0) continue;
    free.splice(k, 1);
    kept++;
  }
  return { total: judged.length, kept };
}
