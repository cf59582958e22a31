/**
 * The critic: a field-by-field comparison of the plan an image was generated from with the describer's
 * plan-format description of that image. The comparison itself is the language module's (evals/language/
 * revision.ts: the same diff the planner's revision mode was trained on), so the critique the planner reads
 * at inference is worded exactly like its training data.
 */
import { parsePlan } from "../../evals/language/plan.ts";
import {
  diffScenes,
  type Finding,
  type FindingField,
  positionPhrase,
} from "../../evals/language/revision.ts";
import { type Color, type Position, parseScene, type Scene, type Shape } from "../../evals/scene.ts";
import { AtelierError, invalid } from "../errors.ts";
import type { CellReading } from "./describer.ts";
import type { Separation } from "./separation.ts";

export type { Finding, FindingField } from "../../evals/language/revision.ts";

export interface CritiqueIssue extends Omit<Finding, "field"> {
  /** A field of the plan, or `touching`: two neighbours drawn as one blob (separation.ts). */
  field: FindingField | "touching";
  /** The finding in words, as it appears in `critique`. */
  message: string;
}

/** An object an edit must leave where it was: its cell in the session image and what it is. */
export interface Stay {
  position: Position;
  shape: Shape;
  color: Color;
}

export interface Critique {
  /** Share of the checks that hold, in [0, 1]; 1 exactly when the description matches the plan. */
  agreement: number;
  /** The failed checks in words, joined by "; " ("the image matches the plan" when there are none). */
  critique: string;
  /** The failed checks as data, in the order of the critique. */
  issues: CritiqueIssue[];
}

/** A plan given as text is parsed; a Scene is validated. Errors name `field`. */
function asScene(value: Scene | string, field: string): Scene {
  if (typeof value !== "string") return parseScene(value, field);
  try {
    return parsePlan(value);
  } catch (error) {
    if (error instanceof AtelierError) throw invalid(field, error.message.replace(/^plan: /, ""));
    throw error;
  }
}

/**
 * Compares what was planned (`target`) with what the image shows (`description`). For an edit, `stay`
 * adds one check per object the edit left alone: the describer's reading of its cell (`cells`) must still
 * show it (preservation); without cell readings those checks are not made. `separation` adds one check per
 * pair of side-by-side objects: they must not touch.
 */
export function critique(
  target: Scene | string,
  description: Scene | string,
  options: { stay?: readonly Stay[]; cells?: readonly CellReading[]; separation?: Separation } = {},
): Critique {
  const want = asScene(target, "target");
  const got = asScene(description, "description");
  const diff = diffScenes(want, got);
  const issues: CritiqueIssue[] = diff.findings.map((finding, k) => ({
    ...finding,
    message: diff.issues[k]!,
  }));
  let checks = diff.checks;
  const cells = options.cells;
  if (cells)
    for (const o of options.stay ?? []) {
      checks++;
      const seen = cells.find((c) => c.position === o.position);
      if (seen?.shape === o.shape && seen.color === o.color) continue;
      const place = positionPhrase(o.position);
      const object = want.objects.findIndex((g) => g.shape === o.shape && g.color === o.color);
      issues.push({
        field: "position",
        ...(object >= 0 && { object }),
        expected: place,
        found: null,
        message: `the ${o.color} ${o.shape} should stay ${place}`,
      });
    }
  if (options.separation) {
    checks += options.separation.pairs;
    for (const [a, b] of options.separation.touching) {
      issues.push({
        field: "touching",
        expected: null,
        found: `${a} ${b}`,
        message: `the objects ${positionPhrase(a)} and ${positionPhrase(b)} should not touch`,
      });
    }
  }
  return {
    agreement: (checks - issues.length) / checks,
    critique: issues.length === 0 ? "the image matches the plan" : issues.map((i) => i.message).join("; "),
    issues,
  };
}
