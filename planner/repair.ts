/**
 * Constraint-based planning (primer, "Constraint-Based Planning"): the grammar already guarantees a
 * well-formed scene, but not one the world can lay out (two objects asked for the same cell, or a relation
 * with no room on the required side). Repair frees the offending group's placement, one at a time, and
 * reports what it changed.
 */
import { layoutScene } from "../evals/layout.ts";
import type { Scene } from "../evals/scene.ts";
import { AtelierError } from "../src/errors.ts";

export function repairScene(scene: Scene): { scene: Scene; repairs: string[] } {
  let current = scene;
  const repairs: string[] = [];
  for (let attempt = 0; attempt <= scene.objects.length; attempt++) {
    try {
      layoutScene(current, 0);
      return { scene: current, repairs };
    } catch (error) {
      const match =
        error instanceof AtelierError ? /^objects\.(\d+)\.placement$/.exec(error.param ?? "") : null;
      if (!match) throw error;
      const index = Number(match[1]);
      repairs.push(`object ${index + 1}: ${error instanceof Error ? error.message : error}; placed anywhere`);
      current = {
        ...current,
        objects: current.objects.map((group, i) =>
          i === index ? { ...group, placement: { kind: "free" } } : group,
        ),
      };
    }
  }
  throw new AtelierError("plan could not be repaired into a scene the world can lay out", {
    status: 422,
    code: "plan_unrepairable",
    param: "plan",
  });
}
