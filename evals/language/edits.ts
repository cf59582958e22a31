/**
 * Multi-turn edit dialogues: a first request, then edits (recolour, add, remove, move, resize, recount,
 * restyle, background, lighting) that refer to groups the way people do ("it", "the star", "the left one",
 * "the red one", "the circles"). Every edit is a pure function of the scene and changes only what it must.
 */
import { invalid } from "../../src/errors.ts";
import { layoutScene } from "../layout.ts";
import type { Rng } from "../rng.ts";
import {
  BACKGROUNDS,
  type Background,
  COLORS,
  type Color,
  LIGHTINGS,
  type Lighting,
  MAX_GROUPS,
  MAX_OBJECTS,
  type ObjectGroup,
  type Placement,
  POSITIONS,
  RELATIONS,
  type Scene,
  SceneSchema,
  SHAPES,
  SIZES,
  type Size,
  STYLES,
  type Style,
} from "../scene.ts";
import { referringPhrase } from "./refs.ts";
import {
  BACKGROUND_WORDS,
  type Family,
  finish,
  LIGHTING_ADJECTIVES,
  LIGHTING_NOUNS,
  objectPhrase,
  POSITION_WORDS,
  RELATION_WORDS,
  REQUEST_FRAMES,
  requestFor,
  SIZE_WORDS,
  STYLE_NOUNS,
  STYLE_WORDS,
} from "./requests.ts";
import { numberWord, shapeWord } from "./words.ts";

export type Edit =
  | { kind: "recolor"; target: number; color: Color }
  | { kind: "add"; group: ObjectGroup }
  | { kind: "remove"; target: number }
  | { kind: "move"; target: number; placement: Placement }
  | { kind: "resize"; target: number; size: Size }
  | { kind: "recount"; target: number; count: number }
  | { kind: "restyle"; style: Style }
  | { kind: "background"; background: Background }
  | { kind: "lighting"; lighting: Lighting };
export type EditKind = Edit["kind"];
export const EDIT_KINDS: readonly EditKind[] = [
  "recolor",
  "add",
  "remove",
  "move",
  "resize",
  "recount",
  "restyle",
  "background",
  "lighting",
];

/** Applies one edit; throws invalid("edit", …) if the result is not a valid scene. */
export function applyEdit(scene: Scene, edit: Edit): Scene {
  const objects = scene.objects.map((group) => ({ ...group }));
  let next: Scene;
  switch (edit.kind) {
    case "recolor":
    case "move":
    case "resize":
    case "recount": {
      const group = objects[edit.target];
      if (!group) throw invalid("edit.target", `no object group ${edit.target}`);
      if (edit.kind === "recolor") group.color = edit.color;
      if (edit.kind === "move") group.placement = edit.placement;
      if (edit.kind === "resize") group.size = edit.size;
      if (edit.kind === "recount") group.count = edit.count;
      next = { ...scene, objects };
      break;
    }
    case "add":
      next = { ...scene, objects: [...objects, { ...edit.group }] };
      break;
    case "remove": {
      if (!objects[edit.target]) throw invalid("edit.target", `no object group ${edit.target}`);
      const dependent = objects.findIndex(
        (g) => g.placement.kind === "relation" && g.placement.of === edit.target,
      );
      if (dependent >= 0) {
        throw invalid("edit.target", `object group ${dependent} is placed relative to group ${edit.target}`);
      }
      const kept = objects.filter((_, i) => i !== edit.target);
      next = {
        ...scene,
        objects: kept.map((g) =>
          g.placement.kind === "relation" && g.placement.of > edit.target
            ? { ...g, placement: { ...g.placement, of: g.placement.of - 1 } }
            : g,
        ),
      };
      break;
    }
    case "restyle":
      next = { ...scene, objects, style: edit.style };
      break;
    case "background":
      next = { ...scene, objects, background: edit.background };
      break;
    case "lighting":
      next = { ...scene, objects, lighting: edit.lighting };
      break;
  }
  const result = SceneSchema.safeParse(next);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw invalid(["edit", ...issue.path].join("."), issue.message);
  }
  return result.data;
}

/** Valid, renderable (the layout finds a cell for every object) and free of look-alike groups. */
export function isUsableScene(scene: Scene): boolean {
  if (!SceneSchema.safeParse(scene).success) return false;
  const kinds = new Set(scene.objects.map((g) => `${g.color} ${g.shape}`));
  if (kinds.size !== scene.objects.length) return false;
  try {
    layoutScene(scene, 0);
    return true;
  } catch {
    return false;
  }
}

const total = (scene: Scene) => scene.objects.reduce((sum, g) => sum + g.count, 0);
const isAnchor = (scene: Scene, index: number) =>
  scene.objects.some((g) => g.placement.kind === "relation" && g.placement.of === index);

/** Placements a single object may take: an unused grid cell, or a relation to a single, non-relation group. */
function placementOptions(scene: Scene, self: number): Placement[] {
  const used = new Set(
    scene.objects.flatMap((g, i) =>
      i !== self && g.placement.kind === "grid" ? [g.placement.position] : [],
    ),
  );
  const options: Placement[] = POSITIONS.filter((p) => !used.has(p)).map((position) => ({
    kind: "grid",
    position,
  }));
  if (self < scene.objects.length && isAnchor(scene, self)) return options;
  scene.objects.forEach((g, of) => {
    if (of === self || g.count !== 1 || g.placement.kind === "relation") return;
    for (const relation of RELATIONS) options.push({ kind: "relation", relation, of });
  });
  return options;
}

function otherThan<T>(items: readonly T[], current: T): T[] {
  return items.filter((item) => item !== current);
}

/** One random edit that applies to `scene`, or null if `kind` cannot apply. */
export function proposeEdit(scene: Scene, kind: EditKind, rng: Rng): Edit | null {
  const n = scene.objects.length;
  const target = rng.int(n);
  const group = scene.objects[target]!;
  switch (kind) {
    case "recolor":
      return { kind, target, color: rng.pick(otherThan(COLORS, group.color)) };
    case "add": {
      if (n >= MAX_GROUPS || total(scene) >= MAX_OBJECTS) return null;
      const count = rng.chance(0.7) ? 1 : 2 + rng.int(Math.min(3, MAX_OBJECTS - total(scene) - 1));
      const placement: Placement =
        count === 1 && rng.chance(0.6) ? rng.pick(placementOptions(scene, n)) : { kind: "free" };
      return {
        kind,
        group: { shape: rng.pick(SHAPES), color: rng.pick(COLORS), size: rng.pick(SIZES), count, placement },
      };
    }
    case "remove":
      return n > 1 && !isAnchor(scene, target) ? { kind, target } : null;
    case "move": {
      if (group.count !== 1) return null;
      const current = JSON.stringify(group.placement);
      const options = placementOptions(scene, target).filter((p) => JSON.stringify(p) !== current);
      return options.length > 0 ? { kind, target, placement: rng.pick(options) } : null;
    }
    case "resize":
      return { kind, target, size: rng.pick(otherThan(SIZES, group.size)) };
    case "recount": {
      if (group.placement.kind !== "free" || isAnchor(scene, target)) return null;
      const room = Math.min(4, MAX_OBJECTS - total(scene) + group.count);
      const counts = otherThan(
        Array.from({ length: room }, (_, i) => i + 1),
        group.count,
      );
      return counts.length > 0 ? { kind, target, count: rng.pick(counts) } : null;
    }
    case "restyle":
      return { kind, style: rng.pick(otherThan(STYLES, scene.style)) };
    case "background":
      return { kind, background: rng.pick(otherThan(BACKGROUNDS, scene.background)) };
    case "lighting":
      return { kind, lighting: rng.pick(otherThan(LIGHTINGS, scene.lighting)) };
  }
}

// ---- phrasing ----

/**
 * Slots: {ref} the edited group; {ref2} another group; {c} a colour; {np} a new group with its placement;
 * {p} a position; {r} a relation; {z} a size; {num} a new group description with its count; {s}/{sn} a
 * style word/noun; {bg} a background; {L}/{l} a lighting noun/adjective.
 */
export interface EditFrames {
  lead: string[];
  recolor: string[];
  add: string[];
  remove: string[];
  moveGrid: string[];
  moveRelation: string[];
  resize: string[];
  grow: string[];
  shrink: string[];
  recount: string[];
  restyle: string[];
  background: string[];
  lighting: string[];
}

export const EDIT_FRAMES: Record<Family, EditFrames> = {
  train: {
    lead: ["", "", "now ", "ok, ", "great, now ", "hmm, "],
    recolor: [
      "make {ref} {c}",
      "change {ref} to {c}",
      "color {ref} {c}",
      "{ref} should be {c}",
      "paint {ref} {c}",
    ],
    add: ["add {np}", "also add {np}", "put {np} in there too", "can you add {np}?"],
    remove: ["remove {ref}", "delete {ref}", "get rid of {ref}", "take out {ref}", "please remove {ref}"],
    moveGrid: ["move {ref} to the {p}", "put {ref} in the {p}", "{ref} should go in the {p}"],
    moveRelation: ["move {ref} {r} {ref2}", "put {ref} {r} {ref2}"],
    resize: ["make {ref} {z}", "change {ref} to {z}", "{ref} should be {z}"],
    grow: ["make {ref} bigger", "enlarge {ref}", "make {ref} larger"],
    shrink: ["make {ref} smaller", "shrink {ref}"],
    recount: ["change {ref} to {num}", "i want {num} instead of {ref}", "make {ref} {num} instead"],
    restyle: [
      "make it {s}",
      "same scene, {s}",
      "switch to a {sn}",
      "change the style to {s}",
      "redo it as a {sn}",
    ],
    background: [
      "change the background to {bg}",
      "make the background {bg}",
      "use a {bg} background",
      "same thing on {bg}",
    ],
    lighting: ["make the lighting {l}", "change the light to {L}", "use {L}", "same scene in {L}"],
  },
  heldout: {
    lead: ["", "alright, ", "nice. ", "next, ", "one more change: "],
    recolor: [
      "turn {ref} {c}",
      "recolor {ref} to {c}",
      "could {ref} be {c} instead?",
      "i'd prefer {ref} in {c}",
    ],
    add: ["throw in {np}", "include {np} as well", "let's also have {np}"],
    remove: ["drop {ref}", "lose {ref}", "i don't want {ref} anymore", "erase {ref}"],
    moveGrid: ["shift {ref} to the {p}", "relocate {ref} to the {p}", "let {ref} sit in the {p}"],
    moveRelation: ["shift {ref} so it sits {r} {ref2}", "relocate {ref} {r} {ref2}"],
    resize: ["resize {ref} to {z}", "i'd like {ref} {z}", "could {ref} be {z}?"],
    grow: ["scale up {ref}", "could {ref} be bigger?"],
    shrink: ["scale down {ref}", "could {ref} be smaller?"],
    recount: ["swap {ref} for {num}", "let's have {num} rather than {ref}"],
    restyle: ["now in {s}", "try it as a {sn}", "give it a {s} look", "restyle everything: {s}"],
    background: ["set the backdrop to {bg}", "swap the backdrop for {bg}", "backdrop {bg} please"],
    lighting: ["lighting: {l}", "try {L} instead", "go with {L}"],
  },
};

function fill(template: string, slots: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = slots[name];
    if (value === undefined) throw new Error(`template slot {${name}} unfilled in "${template}"`);
    return value;
  });
}

/** Where a single-object group sits relative to another, when the scene says so unambiguously. */
function side(scene: Scene, a: number, b: number): "left" | "right" | "top" | "bottom" | null {
  const pa = scene.objects[a]!.placement;
  const pb = scene.objects[b]!.placement;
  if (pa.kind === "relation" && pa.of === b) {
    return ({ left_of: "left", right_of: "right", above: "top", below: "bottom" } as const)[pa.relation];
  }
  if (pb.kind === "relation" && pb.of === a) {
    return ({ left_of: "right", right_of: "left", above: "bottom", below: "top" } as const)[pb.relation];
  }
  if (pa.kind === "grid" && pb.kind === "grid") {
    const ca = POSITIONS.indexOf(pa.position);
    const cb = POSITIONS.indexOf(pb.position);
    if (ca % 3 !== cb % 3) return ca % 3 < cb % 3 ? "left" : "right";
    return Math.floor(ca / 3) < Math.floor(cb / 3) ? "top" : "bottom";
  }
  return null;
}

/** Ways to refer to group `target` in the current scene; `focus` is the group the dialogue last touched. */
export function referencesTo(scene: Scene, target: number, focus: number | null): string[] {
  const group = scene.objects[target]!;
  const refs = [referringPhrase(scene, target)];
  if (focus === target || scene.objects.length === 1) refs.push(group.count === 1 ? "it" : "them");
  const one = group.count === 1 ? "one" : "ones";
  if (scene.objects.filter((g) => g.color === group.color).length === 1)
    refs.push(`the ${group.color} ${one}`);
  if (scene.objects.length === 2 && group.count === 1 && scene.objects[1 - target]!.count === 1) {
    const where = side(scene, target, 1 - target);
    if (where) refs.push(`the ${where} one`);
  }
  return refs;
}

/** The placement of a new group, in the family's request frames. */
function placementWords(scene: Scene, placement: Placement, family: Family, rng: Rng): string {
  const frames = REQUEST_FRAMES[family];
  if (placement.kind === "grid") {
    return fill(rng.pick(frames.position), { p: rng.pick(POSITION_WORDS[placement.position]) });
  }
  if (placement.kind === "relation") {
    return fill(rng.pick(frames.relation), {
      r: rng.pick(RELATION_WORDS[placement.relation]),
      ref: anchorReference(scene, placement.of, rng),
    });
  }
  return "";
}

/** A reference to an anchor group; never "it", which would read as the edited group. */
function anchorReference(scene: Scene, of: number, rng: Rng): string {
  return rng.pick(referencesTo(scene, of, null).filter((r) => r !== "it" && r !== "them"));
}

/** The words of one edit, given the scene before it. */
export function editText(scene: Scene, edit: Edit, focus: number | null, family: Family, rng: Rng): string {
  const frames = EDIT_FRAMES[family];
  const ref = "target" in edit ? rng.pick(referencesTo(scene, edit.target, focus)) : "";
  let text: string;
  switch (edit.kind) {
    case "recolor":
      text = fill(rng.pick(frames.recolor), { ref, c: edit.color });
      break;
    case "add": {
      const after = applyEdit(scene, edit);
      const where = placementWords(after, edit.group.placement, family, rng);
      text = fill(rng.pick(frames.add), {
        np: [objectPhrase(edit.group, rng), where].filter(Boolean).join(" "),
      });
      break;
    }
    case "remove":
      text = fill(rng.pick(frames.remove), { ref });
      break;
    case "move":
      if (edit.placement.kind === "grid") {
        text = fill(rng.pick(frames.moveGrid), { ref, p: rng.pick(POSITION_WORDS[edit.placement.position]) });
      } else if (edit.placement.kind === "relation") {
        const r = rng.pick(RELATION_WORDS[edit.placement.relation]);
        text = fill(rng.pick(frames.moveRelation), {
          ref,
          r,
          ref2: anchorReference(scene, edit.placement.of, rng),
        });
      } else {
        throw invalid("edit.placement", "moving to 'anywhere' has no phrasing");
      }
      break;
    case "resize": {
      const from = SIZES.indexOf(scene.objects[edit.target]!.size);
      const to = SIZES.indexOf(edit.size);
      const relative = Math.abs(to - from) === 1 && rng.chance(0.5);
      const frame = relative ? (to > from ? frames.grow : frames.shrink) : frames.resize;
      text = fill(rng.pick(frame), { ref, z: rng.pick(SIZE_WORDS[edit.size]) });
      break;
    }
    case "recount": {
      const group = scene.objects[edit.target]!;
      const num = `${numberWord(edit.count)} ${group.color} ${shapeWord(group.shape, edit.count)}`;
      text = fill(rng.pick(frames.recount), { ref, num: num.replace(/^one /, "a ") });
      break;
    }
    case "restyle":
      text = fill(rng.pick(frames.restyle), {
        s: rng.pick(STYLE_WORDS[edit.style]),
        sn: rng.pick(STYLE_NOUNS[edit.style]),
      });
      break;
    case "background":
      text = fill(rng.pick(frames.background), { bg: rng.pick(BACKGROUND_WORDS[edit.background]) });
      break;
    case "lighting":
      text = fill(rng.pick(frames.lighting), {
        L: rng.pick(LIGHTING_NOUNS[edit.lighting]),
        l: rng.pick(LIGHTING_ADJECTIVES[edit.lighting]),
      });
      break;
  }
  return finish(rng.pick(frames.lead) + text, "");
}

export interface DialogueTurn {
  /** What the user says this turn. */
  request: string;
  /** The scene after this turn (the planner's target plan is printPlan(scene)). */
  scene: Scene;
  /** "request" for the opening turn, else the edit's kind. */
  kind: "request" | EditKind;
  edit?: Edit;
}

export interface DialogueOptions {
  family?: Family;
  /** Scenes the dialogue must never pass through (e.g. held-out compositions in a train corpus). */
  reject?: (scene: Scene) => boolean;
}

const MAX_EDIT_TRIES = 50;

/** Focus after an edit: the group it touched (none after a removal). */
function focusAfter(edit: Edit, scene: Scene, focus: number | null): number | null {
  if (edit.kind === "add") return scene.objects.length - 1;
  if (edit.kind === "remove") return null;
  return "target" in edit ? edit.target : focus;
}

/**
 * `turns` turns: an opening request for `scene`, then `turns - 1` edits, each to a usable scene (see
 * isUsableScene) that `reject` does not refuse.
 */
export function editDialogue(
  scene: Scene,
  rng: Rng,
  turns: number,
  options: DialogueOptions = {},
): DialogueTurn[] {
  const family = options.family ?? "train";
  const dialogue: DialogueTurn[] = [{ request: requestFor(scene, rng, family), scene, kind: "request" }];
  let current = scene;
  let focus: number | null = scene.objects.length === 1 ? 0 : null;
  for (let turn = 1; turn < turns; turn++) {
    let done = false;
    for (let attempt = 0; attempt < MAX_EDIT_TRIES && !done; attempt++) {
      const edit = proposeEdit(current, rng.pick(EDIT_KINDS), rng);
      if (!edit) continue;
      let next: Scene;
      try {
        next = applyEdit(current, edit);
      } catch {
        continue;
      }
      if (!isUsableScene(next) || options.reject?.(next)) continue;
      const request = editText(current, edit, focus, family, rng);
      dialogue.push({ request, scene: next, kind: edit.kind, edit });
      focus = focusAfter(edit, next, focus);
      current = next;
      done = true;
    }
    if (!done) throw invalid("turns", `no applicable edit found for turn ${turn + 1}`);
  }
  return dialogue;
}
