/**
 * The canonical plan text (the contract between the planner LLM, the projection layers and the critic)
 * and its parser. The grammar itself lives once, in plan-grammar.ts.
 */
import { type Placement, parseScene, type Scene } from "../scene.ts";
import { runPlanGrammar } from "./plan-grammar.ts";
import { numberWord, positionWords, relationWords, shapeWord } from "./words.ts";

export function layoutWords(placement: Placement): string {
  switch (placement.kind) {
    case "free":
      return "anywhere";
    case "grid":
      return positionWords(placement.position);
    case "relation":
      return `${relationWords(placement.relation)} ${placement.of + 1}`;
  }
}

/** The plan of a scene: objects numbered 1..n in `scene.objects` order. */
export function printPlan(scene: Scene): string {
  const layout = scene.objects.map((g, i) => `${i + 1} ${layoutWords(g.placement)}`);
  const objects = scene.objects.map(
    (g, i) => `${i + 1} ${numberWord(g.count)} ${g.size} ${shapeWord(g.shape, g.count)}`,
  );
  const colors = scene.objects.map((g, i) => `${i + 1} ${g.color}`);
  return [
    "<IMG_BEGIN> <STYLE>",
    scene.style,
    "<LAYOUT>",
    layout.join(" ; "),
    "<OBJECT>",
    objects.join(" ; "),
    "<COLOR>",
    colors.join(" ; "),
    "; background",
    scene.background,
    "<LIGHTING>",
    scene.lighting,
    "<IMG_END>",
  ].join(" ");
}

/** Parses plan text into a Scene; throws invalid("plan", …) naming the first bad token and what was expected. */
export function parsePlan(text: string): Scene {
  const { fields } = runPlanGrammar(text);
  return parseScene(
    {
      objects: fields.objects.map((o, i) => ({ ...o, color: fields.colors[i], placement: fields.layout[i] })),
      background: fields.background,
      style: fields.style,
      lighting: fields.lighting,
    },
    "plan",
  );
}
