/**
 * Eval prompt files (DESIGN.md, "Eval prompt files"): JSONL, one prompt per line. The schema checks the
 * shape of each line and that its `expect` block is satisfiable in the shapes world (≤ 4 groups, ≤ 9
 * objects, counts ≤ 4, positions and relations that some layout of the 3×3 grid meets, nothing both
 * required and absent), so a failing prompt always means a failing generator, never an impossible test.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { AtelierError, invalid } from "../../src/errors.ts";
import { relationHolds } from "../layout.ts";
import {
  BACKGROUNDS,
  COLORS,
  LIGHTINGS,
  MAX_COUNT,
  MAX_GROUPS,
  MAX_OBJECTS,
  POSITIONS,
  RELATIONS,
  SHAPES,
  SIZES,
  STYLES,
} from "../scene.ts";

export const PROMPT_CATEGORIES = [
  "single_object",
  "two_objects",
  "counting",
  "colors",
  "position",
  "color_attr",
  "style_background",
  "edit",
] as const;

const ExpectObjectSchema = z
  .object({
    shape: z.enum(SHAPES),
    color: z.enum(COLORS).optional(),
    size: z.enum(SIZES).optional(),
    count: z.number().int().min(1).max(MAX_COUNT).optional(),
    position: z.enum(POSITIONS).optional(),
  })
  .strict();

const AbsentSchema = z
  .object({ shape: z.enum(SHAPES), color: z.enum(COLORS).optional(), size: z.enum(SIZES).optional() })
  .strict();

const RelationSchema = z
  .object({ a: z.number().int().min(0), rel: z.enum(RELATIONS), b: z.number().int().min(0) })
  .strict();

type ExpectObject = z.infer<typeof ExpectObjectSchema>;

/** Distinct cells for the placed objects that meet every position and relation (brute force: ≤ 4 objects). */
function layoutExists(objects: ExpectObject[], relations: z.infer<typeof RelationSchema>[]): boolean {
  const placed = objects
    .map((_, i) => i)
    .filter((i) => objects[i]!.position !== undefined || relations.some((r) => r.a === i || r.b === i));
  const cells = new Map<number, number>();
  const fits = (depth: number): boolean => {
    if (depth === placed.length) {
      return relations.every((r) => relationHolds(r.rel, cells.get(r.a)!, cells.get(r.b)!));
    }
    const index = placed[depth]!;
    const position = objects[index]!.position;
    for (let cell = 0; cell < POSITIONS.length; cell++) {
      if (position !== undefined && POSITIONS[cell] !== position) continue;
      if ([...cells.values()].includes(cell)) continue;
      cells.set(index, cell);
      if (fits(depth + 1)) return true;
      cells.delete(index);
    }
    return false;
  };
  return fits(0);
}

export const ExpectSchema = z
  .object({
    objects: z.array(ExpectObjectSchema).min(1).max(MAX_GROUPS),
    relations: z.array(RelationSchema).optional(),
    exact_count: z.boolean().optional(),
    absent: z.array(AbsentSchema).optional(),
    background: z.enum(BACKGROUNDS).optional(),
    style: z.enum(STYLES).optional(),
    lighting: z.enum(LIGHTINGS).optional(),
  })
  .strict()
  .superRefine((expect, ctx) => {
    const { objects } = expect;
    const relations = expect.relations ?? [];
    const issue = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: "custom", path, message });
    const total = objects.reduce((sum, o) => sum + (o.count ?? 1), 0);
    if (total > MAX_OBJECTS) issue(["objects"], `at most ${MAX_OBJECTS} objects in all, got ${total}`);
    objects.forEach((o, i) => {
      if (o.position !== undefined && (o.count ?? 1) > 1) {
        issue(["objects", i, "position"], "a position needs a single object (one object per grid cell)");
      }
      objects.slice(0, i).forEach((earlier, j) => {
        const told = (field: "color" | "size") =>
          o[field] !== undefined && earlier[field] !== undefined && o[field] !== earlier[field];
        if (o.shape === earlier.shape && !told("color") && !told("size")) {
          issue(["objects", i], `overlaps objects[${j}]: same shape without a different colour or size`);
        }
      });
    });
    relations.forEach((r, k) => {
      for (const side of ["a", "b"] as const) {
        const object = objects[r[side]];
        if (!object) issue(["relations", k, side], `no objects[${r[side]}] (0..${objects.length - 1})`);
        else if ((object.count ?? 1) > 1) issue(["relations", k, side], "a relation needs a single object");
      }
      if (r.a === r.b) issue(["relations", k, "b"], "an object cannot be related to itself");
    });
    (expect.absent ?? []).forEach((a, k) => {
      const clash = objects.findIndex(
        (o) =>
          o.shape === a.shape &&
          (a.color === undefined || o.color === a.color) &&
          (a.size === undefined || o.size === a.size),
      );
      if (clash >= 0) issue(["absent", k], `contradicts objects[${clash}]`);
    });
    const checked = relations.every((r) => objects[r.a] && objects[r.b] && r.a !== r.b);
    if (checked && !layoutExists(objects, relations)) {
      issue(["relations"], "no arrangement on the 3×3 grid meets these positions and relations");
    }
  });
export type PromptExpect = z.infer<typeof ExpectSchema>;

export const PromptSchema = z
  .object({
    id: z.string().min(1),
    category: z.string().min(1),
    prompt: z.string().min(1).max(1024).optional(),
    turns: z.array(z.string().min(1).max(1024)).min(1).optional(),
    expect: ExpectSchema,
    /** True when the prompt uses a held-out composition (evals/sample.ts) that train never shows. */
    heldout: z.boolean().optional(),
  })
  .strict()
  .superRefine((prompt, ctx) => {
    if ((prompt.prompt === undefined) === (prompt.turns === undefined)) {
      ctx.addIssue({ code: "custom", path: ["prompt"], message: "give exactly one of prompt and turns" });
    }
  });
export type EvalPrompt = z.infer<typeof PromptSchema>;

/** Parses one JSONL line; `where` prefixes errors (e.g. "prompts.jsonl line 12"). */
export function parsePromptLine(text: string, where: string): EvalPrompt {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalid(where, `not valid JSON (${(error as Error).message})`);
  }
  const result = PromptSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.length > 0 ? issue.path.join(".") : "(line)";
  throw invalid(`${where}: ${field}`, issue.message);
}

/** Reads a JSONL prompt file; errors name the file, the line number and the field. Blank lines are skipped. */
export function readPromptFile(path: string): EvalPrompt[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new AtelierError(`prompts: cannot read ${path}: ${(error as Error).message}`, { param: "prompts" });
  }
  const prompts: EvalPrompt[] = [];
  const ids = new Map<string, number>();
  text.split("\n").forEach((line, index) => {
    if (line.trim() === "") return;
    const where = `${path} line ${index + 1}`;
    const prompt = parsePromptLine(line, where);
    const seen = ids.get(prompt.id);
    if (seen !== undefined)
      throw invalid(`${where}: id`, `duplicate id '${prompt.id}' (first on line ${seen})`);
    ids.set(prompt.id, index + 1);
    prompts.push(prompt);
  });
  if (prompts.length === 0) throw invalid("prompts", `${path} holds no prompts`);
  return prompts;
}
