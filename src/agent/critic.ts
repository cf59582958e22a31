/**
 * The critic: a field-by-field comparison of the plan an image was generated from with the describer's
 * plan-format description of that image. The comparison itself is the language module's (evals/language/
 * revision.ts: the same diff the planner's revision mode was trained on), so the critique the planner reads
 * at inference is worded exactly like its training data.
 */
import { parsePlan } from "../../evals/language/plan.ts";
import { diffScenes, type Finding } from "../../evals/language/revision.ts";
import { parseScene, type Scene } from "../../evals/scene.ts";
import { AtelierError, invalid } from "../errors.ts";

export type { Finding, FindingField } from "../../evals/language/revision.ts";

export interface CritiqueIssue extends Finding {
  /** The finding in words, as it appears in `critique`. */
  message: string;
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

/** Compares what was planned (`target`) with what the image shows (`description`). */
export function critique(target: Scene | string, description: Scene | string): Critique {
  const want = asScene(target, "target");
  const got = asScene(description, "description");
  const diff = diffScenes(want, got);
  return {
    agreement: (diff.checks - diff.issues.length) / diff.checks,
    critique: diff.issues.length === 0 ? "the image matches the plan" : diff.issues.join("; "),
    issues: diff.findings.map((finding, k) => ({ ...finding, message: diff.issues[k]! })),
  };
}
