/**
 * The shapes world's scene model: the single source of truth that the renderer draws, the language
 * module describes, the plan format encodes, and the oracle detector recovers. The vocabulary below is a
 * contract with prompt files written by others (DESIGN.md, "The shapes world").
 */
import { z } from "zod";
import { invalid } from "../src/errors.ts";

export const SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross"] as const;
export const COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink"] as const;
export const SIZES = ["small", "medium", "large"] as const;
/** The 3×3 grid, row-major from the top left. */
export const POSITIONS = [
  "top_left",
  "top",
  "top_right",
  "left",
  "center",
  "right",
  "bottom_left",
  "bottom",
  "bottom_right",
] as const;
export const RELATIONS = ["left_of", "right_of", "above", "below"] as const;
export const BACKGROUNDS = ["white", "black", "gray", "sky"] as const;
export const STYLES = ["flat", "outline", "watercolor"] as const;
export const LIGHTINGS = ["daylight", "dim", "warm"] as const;

export type Shape = (typeof SHAPES)[number];
export type Color = (typeof COLORS)[number];
export type Size = (typeof SIZES)[number];
export type Position = (typeof POSITIONS)[number];
export type Relation = (typeof RELATIONS)[number];
export type Background = (typeof BACKGROUNDS)[number];
export type Style = (typeof STYLES)[number];
export type Lighting = (typeof LIGHTINGS)[number];

/** sRGB of a flat, daylight, matte object (DESIGN.md). */
export const PALETTE: Record<Color, readonly [number, number, number]> = {
  red: [220, 40, 40],
  orange: [245, 140, 30],
  yellow: [240, 210, 40],
  green: [50, 170, 70],
  blue: [40, 90, 220],
  purple: [140, 60, 190],
  pink: [240, 120, 180],
};

/** Backgrounds; `sky` is a vertical gradient from `top` to `bottom`. */
export const BACKGROUND_RGB: Record<Background, { top: readonly number[]; bottom: readonly number[] }> = {
  white: { top: [245, 245, 245], bottom: [245, 245, 245] },
  black: { top: [20, 20, 20], bottom: [20, 20, 20] },
  gray: { top: [128, 128, 128], bottom: [128, 128, 128] },
  sky: { top: [120, 180, 240], bottom: [200, 230, 255] },
};

export const MAX_GROUPS = 4;
export const MAX_COUNT = 4;
/** Every instance gets its own cell of the 3×3 grid, so a scene holds at most this many objects. */
export const MAX_OBJECTS = 9;

/** Where a group goes: a grid cell, relative to another group (by index), or anywhere (`free`). */
export const PlacementSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("free") }),
  z.object({ kind: z.literal("grid"), position: z.enum(POSITIONS) }),
  z.object({
    kind: z.literal("relation"),
    relation: z.enum(RELATIONS),
    of: z
      .number()
      .int()
      .min(0)
      .max(MAX_GROUPS - 1),
  }),
]);
export type Placement = z.infer<typeof PlacementSchema>;

export const ObjectGroupSchema = z.object({
  shape: z.enum(SHAPES),
  color: z.enum(COLORS),
  size: z.enum(SIZES),
  count: z.number().int().min(1).max(MAX_COUNT),
  placement: PlacementSchema,
});
export type ObjectGroup = z.infer<typeof ObjectGroupSchema>;

export const SceneSchema = z
  .object({
    objects: z.array(ObjectGroupSchema).min(1).max(MAX_GROUPS),
    background: z.enum(BACKGROUNDS),
    style: z.enum(STYLES),
    lighting: z.enum(LIGHTINGS),
  })
  .superRefine((scene, ctx) => {
    const total = scene.objects.reduce((sum, group) => sum + group.count, 0);
    if (total > MAX_OBJECTS) {
      ctx.addIssue({
        code: "custom",
        path: ["objects"],
        message: `at most ${MAX_OBJECTS} objects in all, got ${total}`,
      });
    }
    scene.objects.forEach((group, index) => {
      const placement = group.placement;
      if (placement.kind === "free") return;
      if (group.count > 1) {
        ctx.addIssue({
          code: "custom",
          path: ["objects", index, "placement"],
          message: "a group of more than one object cannot have a position or relation",
        });
      }
      if (placement.kind !== "relation") return;
      const anchor = scene.objects[placement.of];
      if (!anchor || placement.of === index) {
        ctx.addIssue({
          code: "custom",
          path: ["objects", index, "placement", "of"],
          message: `relation must refer to another object group (0..${scene.objects.length - 1}, not itself)`,
        });
      } else if (anchor.count > 1) {
        ctx.addIssue({
          code: "custom",
          path: ["objects", index, "placement", "of"],
          message: "relation must refer to a single object",
        });
      } else if (anchor.placement.kind === "relation") {
        ctx.addIssue({
          code: "custom",
          path: ["objects", index, "placement", "of"],
          message: "relation must refer to an object placed on the grid or free, not to another relation",
        });
      }
    });
  });
export type Scene = z.infer<typeof SceneSchema>;

/** Parses an unknown value into a Scene; throws an AtelierError (400) whose message names the first bad field. */
export function parseScene(value: unknown, field = "scene"): Scene {
  const result = SceneSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  throw invalid([field, ...issue.path].join("."), issue.message);
}
