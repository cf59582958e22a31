/**
 * Shared by the agent tests: the committed embedded describer behind a switch. By default it is the real
 * describer; a test can script what it "sees" (plans, to drive agreements exactly on the noise-like
 * fixture images) or make a given call fail (a failure inside a round).
 */
import { parsePlan } from "../evals/language/plan.ts";
import type { RgbImage } from "../pipelines/image.ts";
import {
  type CellReading,
  type DescribeOptions,
  type Describer,
  type Description,
  type LearnedDescriber,
  loadDescriber,
} from "../src/agent/describer.ts";
import { AgentEngine } from "../src/agent/engine.ts";
import { AtelierError } from "../src/errors.ts";
import type { EngineEvent, RunContext } from "../src/service/engine.ts";

export class SwitchDescriber implements Describer {
  readonly name = "switch";
  /** Plans returned in order, one per call (then the real describer again); with cells, as a cell reader. */
  script: (string | { plan: string; cells: CellReading[] })[] = [];
  /** 1-based call that throws (null: none). */
  failOnCall: number | null = null;
  calls = 0;

  constructor(private readonly real: LearnedDescriber) {}

  static async load(): Promise<SwitchDescriber> {
    return new SwitchDescriber(await loadDescriber(undefined, { threads: 1 }));
  }

  reset(): void {
    this.script = [];
    this.failOnCall = null;
    this.calls = 0;
  }

  async describe(image: RgbImage, options?: DescribeOptions): Promise<Description> {
    this.calls++;
    if (this.calls === this.failOnCall)
      throw new AtelierError("the describer crashed", { status: 500, code: "describer_failed" });
    const next = this.script.shift();
    if (next === undefined) return this.real.describe(image, options);
    if (typeof next === "string") return { scene: parsePlan(next), plan: next, confidence: null };
    return { scene: parsePlan(next.plan), plan: next.plan, confidence: null, cells: next.cells };
  }

  dispose(): Promise<void> {
    return this.real.dispose();
  }
}

/** The fixtures' engine: tiny-ldm, a planner, the projection when the planner is tiny-planner. */
export function loadFixtureAgent(
  describer: Describer | string = "models/describer",
  planner: "tiny" | "embedded" = "tiny",
): Promise<AgentEngine> {
  return AgentEngine.load({
    ldm: "tests/fixtures/tiny-ldm",
    planner: planner === "tiny" ? "tests/fixtures/tiny-planner" : "models/planner",
    projection: planner === "tiny" ? "tests/fixtures/tiny-projection" : null,
    describer,
    threads: 1,
  });
}

/** A RunContext that records events (and can abort from inside one). */
export function recorder(onEvent?: (event: EngineEvent, abort: (reason: string) => void) => void): {
  context: RunContext;
  events: EngineEvent[];
} {
  const controller = new AbortController();
  const events: EngineEvent[] = [];
  const context: RunContext = {
    signal: controller.signal,
    onEvent: (event) => {
      events.push(event);
      onEvent?.(event, (reason) =>
        controller.abort(new AtelierError(reason, { status: 499, code: "cancelled" })),
      );
    },
  };
  return { context, events };
}

/** "type:round" of each event, with step events folded into one "step:round" per round. */
export function eventPath(events: EngineEvent[]): string[] {
  const path: string[] = [];
  for (const e of events) {
    const label = `${e.type}:${e.round}`;
    if (e.type === "step" && path.at(-1) === label) continue;
    path.push(label);
  }
  return path;
}
