/**
 * Aggregation and rendering of an eval run: GenEval's scoring (a prompt's score is the share of its images
 * that pass; a category's accuracy is the mean of its prompts' scores; overall is the mean of the category
 * accuracies, so small categories weigh as much as large ones).
 */
import type { ClauseResult } from "./expect.ts";
import type { Preservation } from "./preservation.ts";

export interface ImageResult {
  seed: number;
  pass: boolean;
  /** Only the clauses that failed (all clauses hold when `pass`). */
  failing: ClauseResult[];
  /** Edit dialogues, when the generator reports the image before the last turn (evals/preservation.ts). */
  preservation?: Preservation;
}

export interface PromptResult {
  id: string;
  category: string;
  /** The prompt, or the turns of an edit dialogue. */
  text: string | string[];
  held_out: boolean;
  score: number;
  images: ImageResult[];
}

export interface Accuracy {
  accuracy: number;
  /** Prompts in the group. */
  n: number;
  /** Images judged in the group. */
  images: number;
}

export interface Report {
  mode: string;
  prompts_file: string;
  seed: number;
  images_per_prompt: number;
  overall: number;
  categories: Record<string, Accuracy>;
  held_out: Accuracy;
  seen: Accuracy;
  /**
   * Edit dialogues: share of the objects the last turn left untouched that kept shape, colour and cell
   * (over all judged objects); null when the generator reports no image before the last turn.
   */
  preservation: { rate: number | null; objects: number; images: number } | null;
  contact_sheet: string;
  prompts: PromptResult[];
}

export function promptScore(images: readonly ImageResult[]): number {
  return images.length === 0 ? 0 : images.filter((i) => i.pass).length / images.length;
}

function accuracyOf(prompts: readonly PromptResult[]): Accuracy {
  const n = prompts.length;
  const accuracy = n === 0 ? 0 : prompts.reduce((sum, p) => sum + p.score, 0) / n;
  return { accuracy, n, images: prompts.reduce((sum, p) => sum + p.images.length, 0) };
}

function preservationOf(prompts: readonly PromptResult[]): Report["preservation"] {
  const judged = prompts.flatMap((p) => p.images.flatMap((i) => (i.preservation ? [i.preservation] : [])));
  if (judged.length === 0) return null;
  const objects = judged.reduce((sum, p) => sum + p.total, 0);
  const kept = judged.reduce((sum, p) => sum + p.kept, 0);
  return { rate: objects === 0 ? null : kept / objects, objects, images: judged.length };
}

export function summarize(
  prompts: readonly PromptResult[],
): Pick<Report, "overall" | "categories" | "held_out" | "seen" | "preservation"> {
  const byCategory = new Map<string, PromptResult[]>();
  for (const prompt of prompts) {
    const group = byCategory.get(prompt.category) ?? [];
    group.push(prompt);
    byCategory.set(prompt.category, group);
  }
  const categories: Record<string, Accuracy> = {};
  for (const name of [...byCategory.keys()].sort()) categories[name] = accuracyOf(byCategory.get(name)!);
  const accuracies = Object.values(categories).map((c) => c.accuracy);
  const overall = accuracies.length === 0 ? 0 : accuracies.reduce((a, b) => a + b, 0) / accuracies.length;
  return {
    overall,
    categories,
    held_out: accuracyOf(prompts.filter((p) => p.held_out)),
    seen: accuracyOf(prompts.filter((p) => !p.held_out)),
    preservation: preservationOf(prompts),
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

function preservationText(p: Report["preservation"]): string {
  if (!p) return "– (this mode reports no image before an edit's last turn)";
  if (p.rate === null) return `– (no untouched object was visible before the edit in ${p.images} images)`;
  return `${pct(p.rate)} of ${p.objects} objects in ${p.images} images`;
}

export function reportMarkdown(report: Report): string {
  const lines = [
    `# Eval report: mode ${report.mode}`,
    "",
    `Prompts: \`${report.prompts_file}\` · ${report.prompts.length} prompts × ${report.images_per_prompt} images · seed ${report.seed}`,
    "",
    `**Overall (mean of category accuracies): ${report.overall.toFixed(4)}**`,
    "",
    "| category | accuracy | prompts | images |",
    "|---|---:|---:|---:|",
    ...Object.entries(report.categories).map(
      ([name, c]) => `| ${name} | ${pct(c.accuracy)} | ${c.n} | ${c.images} |`,
    ),
    "",
    "| compositions | accuracy | prompts | images |",
    "|---|---:|---:|---:|",
    `| held-out | ${report.held_out.n ? pct(report.held_out.accuracy) : "–"} | ${report.held_out.n} | ${report.held_out.images} |`,
    `| seen | ${report.seen.n ? pct(report.seen.accuracy) : "–"} | ${report.seen.n} | ${report.seen.images} |`,
    "",
    `Preservation (edit dialogues: objects the last turn left untouched that kept shape, colour and cell): ${preservationText(report.preservation)}`,
    "",
    `Contact sheet: \`${report.contact_sheet}\``,
  ];
  const failures = report.prompts.filter((p) => p.score < 1);
  if (failures.length > 0) {
    lines.push("", "## Failing prompts", "", "| id | score | first failing clauses |", "|---|---:|---|");
    for (const p of failures) {
      const firstFail = p.images.find((i) => !i.pass)!;
      const why = firstFail.failing.map((c) => `${c.clause} (${c.detail})`).join("; ");
      lines.push(`| ${p.id} | ${pct(p.score)} | ${why.replaceAll("|", "\\|")} |`);
    }
  }
  return `${lines.join("\n")}\n`;
}
