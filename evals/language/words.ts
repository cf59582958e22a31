/**
 * Word forms shared by every text the language module writes (plans, captions, requests, edits,
 * critiques), so the same attribute is always spelled the same way where the spelling is a contract.
 */
import type { ObjectGroup, Placement, Position, Relation, Shape } from "../scene.ts";

export const NUMBER_WORDS = ["one", "two", "three", "four"] as const;
export type NumberWord = (typeof NUMBER_WORDS)[number];

const PLURALS: Record<Shape, string> = {
  circle: "circles",
  square: "squares",
  triangle: "triangles",
  star: "stars",
  diamond: "diamonds",
  cross: "crosses",
};

export function plural(shape: Shape): string {
  return PLURALS[shape];
}

export function shapeWord(shape: Shape, count: number): string {
  return count === 1 ? shape : PLURALS[shape];
}

export function numberWord(count: number): NumberWord {
  const word = NUMBER_WORDS[count - 1];
  if (!word) throw new RangeError(`count must be 1..${NUMBER_WORDS.length}, got ${count}`);
  return word;
}

/** "top_left" → "top left": the plan's and the plain captions' spelling of a grid cell. */
export function positionWords(position: Position): string {
  return position.replace("_", " ");
}

/** "left_of" → "left of": the plan's spelling of a relation. */
export function relationWords(relation: Relation): string {
  return relation.replace("_", " ");
}

/** Indefinite article for a following word. */
export function article(word: string): string {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

/** "a small red circle" / "three large blue crosses"; `withSize` false drops the size. */
export function groupPhrase(
  group: Pick<ObjectGroup, "shape" | "color" | "size" | "count">,
  withSize = true,
): string {
  const words = [withSize ? group.size : "", group.color, shapeWord(group.shape, group.count)].filter(
    Boolean,
  );
  const head = group.count === 1 ? article(words[0]!) : numberWord(group.count);
  return `${head} ${words.join(" ")}`;
}

export function isPlaced(placement: Placement): boolean {
  return placement.kind !== "free";
}
