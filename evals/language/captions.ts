/**
 * Captions of a scene, for text-conditioned training: full descriptions (every attribute of every
 * group, plus background, style and lighting), GenEval-like "a photo of ..." captions and partial ones.
 */
import type { Rng } from "../rng.ts";
import type { Background, Lighting, ObjectGroup, Position, Scene, Style } from "../scene.ts";
import { referringPhrase } from "./refs.ts";
import { article, groupPhrase, numberWord, shapeWord } from "./words.ts";

const GRID_PHRASE: Record<Position, string[]> = {
  top_left: ["at the top left", "in the top left corner"],
  top: ["at the top"],
  top_right: ["at the top right", "in the top right corner"],
  left: ["on the left"],
  center: ["in the center", "in the middle"],
  right: ["on the right"],
  bottom_left: ["at the bottom left", "in the bottom left corner"],
  bottom: ["at the bottom"],
  bottom_right: ["at the bottom right", "in the bottom right corner"],
};

const RELATION_PHRASE = {
  left_of: "to the left of",
  right_of: "to the right of",
  above: "above",
  below: "below",
} as const;

const STYLE_PHRASE: Record<Style, string[]> = {
  flat: ["flat", "flat colors"],
  outline: ["outline", "outline style"],
  watercolor: ["watercolor", "watercolor painting"],
};
const LIGHT_PHRASE: Record<Lighting, string[]> = {
  daylight: ["daylight", "in daylight"],
  dim: ["dim light", "in dim light"],
  warm: ["warm light", "in warm light"],
};
const STYLE_NOUN: Record<Style, string> = {
  flat: "flat illustration",
  outline: "outline drawing",
  watercolor: "watercolor painting",
};

function backgroundPhrase(background: Background): string {
  return `on ${article(background)} ${background} background`;
}

/** Where a group is, as words after its noun phrase ("" for a free group). */
function placementPhrase(scene: Scene, index: number, rng: Rng): string {
  const placement = scene.objects[index]!.placement;
  if (placement.kind === "grid") return rng.pick(GRID_PHRASE[placement.position]);
  if (placement.kind === "relation") {
    return `${RELATION_PHRASE[placement.relation]} ${referringPhrase(scene, placement.of)}`;
  }
  return "";
}

/** Anchors before the groups that refer to them, so "the red circle" is always already introduced. */
function mentionOrder(scene: Scene): number[] {
  const indexes = scene.objects.map((_, i) => i);
  return [
    ...indexes.filter((i) => scene.objects[i]!.placement.kind !== "relation"),
    ...indexes.filter((i) => scene.objects[i]!.placement.kind === "relation"),
  ];
}

function joinList(items: string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

function fullObjects(scene: Scene, rng: Rng): string {
  return joinList(
    mentionOrder(scene).map((i) =>
      [groupPhrase(scene.objects[i]!), placementPhrase(scene, i, rng)].join(" ").trim(),
    ),
  );
}

/** Every attribute, list first: "two small red circles and a medium blue square at the top left on a sky background, watercolor, warm light". */
function fullCaptionA(scene: Scene, rng: Rng): string {
  return [
    `${fullObjects(scene, rng)} ${backgroundPhrase(scene.background)}`,
    rng.pick(STYLE_PHRASE[scene.style]),
    rng.pick(LIGHT_PHRASE[scene.lighting]).replace(/^in /, ""),
  ].join(", ");
}

/** Every attribute, style first: "a watercolor painting of ..., on a sky background, in warm light". */
function fullCaptionB(scene: Scene, rng: Rng): string {
  const light = rng.pick(LIGHT_PHRASE[scene.lighting]);
  return `${article(STYLE_NOUN[scene.style])} ${STYLE_NOUN[scene.style]} of ${fullObjects(scene, rng)}, ${backgroundPhrase(scene.background)}, ${light.startsWith("in ") ? light : `in ${light}`}`;
}

function bareGroup(group: ObjectGroup, withColor: boolean): string {
  const words = [withColor ? group.color : "", shapeWord(group.shape, group.count)].filter(Boolean);
  return `${group.count === 1 ? article(words[0]!) : numberWord(group.count)} ${words.join(" ")}`;
}

/** GenEval's prompt shapes: "a photo of two red circles", "a photo of a star to the left of a square". */
function genevalCaption(scene: Scene, rng: Rng): string {
  const related = scene.objects.findIndex((g) => g.placement.kind === "relation");
  if (related >= 0 && rng.chance(0.5)) {
    const group = scene.objects[related]!;
    const placement = group.placement as Extract<ObjectGroup["placement"], { kind: "relation" }>;
    const anchor = scene.objects[placement.of]!;
    const withColor = rng.chance(0.5);
    return `a photo of ${bareGroup(group, withColor)} ${RELATION_PHRASE[placement.relation]} ${bareGroup(anchor, withColor)}`;
  }
  const withColor = rng.chance(0.8);
  return `a photo of ${joinList(scene.objects.map((g) => bareGroup(g, withColor)))}`;
}

/** A description that leaves some attributes out, as people do. */
function partialCaption(scene: Scene, rng: Rng): string {
  const groups = scene.objects.map((g, i) => {
    const words = groupPhrase(g, rng.chance(0.3));
    return rng.chance(0.4) ? [words, placementPhrase(scene, i, rng)].join(" ").trim() : words;
  });
  const extras = rng.shuffle([
    backgroundPhrase(scene.background),
    rng.pick(STYLE_PHRASE[scene.style]),
    rng.pick(LIGHT_PHRASE[scene.lighting]),
  ]);
  const kept = extras.slice(0, rng.int(3));
  return [joinList(groups), ...kept].join(", ");
}

/** About four varied captions: two full (every attribute), one GenEval-like, one partial. */
export function captionsFor(scene: Scene, rng: Rng): string[] {
  return [
    fullCaptionA(scene, rng),
    fullCaptionB(scene, rng),
    genevalCaption(scene, rng),
    partialCaption(scene, rng),
  ];
}
