/**
 * Referring expressions for object groups ("the star", "the red star", "the circles"): the shortest
 * description that picks one group out of a scene, used by captions, requests, edits and critiques.
 */
import type { ObjectGroup, Scene } from "../scene.ts";
import { shapeWord } from "./words.ts";

type Key = (group: ObjectGroup) => string;

const number = (group: ObjectGroup) => (group.count === 1 ? "1" : "n");
const KEYS: { key: Key; words: (group: ObjectGroup) => string[] }[] = [
  { key: (g) => `${g.shape}/${number(g)}`, words: (g) => [shapeWord(g.shape, g.count)] },
  { key: (g) => `${g.color}/${g.shape}/${number(g)}`, words: (g) => [g.color, shapeWord(g.shape, g.count)] },
  {
    key: (g) => `${g.size}/${g.color}/${g.shape}/${number(g)}`,
    words: (g) => [g.size, g.color, shapeWord(g.shape, g.count)],
  },
];

const ORDINALS = ["first", "second", "third", "fourth"];

/** Words after "the" that single out group `index` (without the article). */
export function referringWords(objects: readonly ObjectGroup[], index: number): string {
  const group = objects[index]!;
  for (const { key, words } of KEYS) {
    const mine = key(group);
    if (objects.every((other, j) => j === index || key(other) !== mine)) return words(group).join(" ");
  }
  // Identical descriptions: fall back to mention order among the look-alikes.
  const full = KEYS[2]!;
  const rank = objects.slice(0, index).filter((other) => full.key(other) === full.key(group)).length;
  return `${ORDINALS[rank]} ${full.words(group).join(" ")}`;
}

export function referringPhrase(scene: Pick<Scene, "objects">, index: number): string {
  return `the ${referringWords(scene.objects, index)}`;
}
