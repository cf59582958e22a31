/**
 * The critique loop as an explicit state graph (@langchain/langgraph): six named nodes and a transition
 * table, checkpointed per generation (MemorySaver, thread id = the generation's id).
 *
 *   plan → condition → sample → describe → critique ─┬─ done ──► END
 *             ▲                                     └─ else ──► revise ─┐
 *             └────────────────────────────────────────────────────────┘
 *
 * "done": the round's agreement is 1, or the round limit is reached. The graph state holds what the loop
 * decides with and what the trace records (plans, critiques, seeds, settings, timings, image keys); pixels
 * and other per-run objects (conditioning tensors, the session's image, the RunContext) stay in the engine's
 * job for the run, so every checkpoint is small plain data (serialising images into each checkpoint cost
 * about 10 ms per graph step).
 */
import { Annotation, END, MemorySaver, START, StateGraph } from "@langchain/langgraph";
import type { TraceRound } from "../service/engine.ts";
import type { CritiqueIssue } from "./critic.ts";

export const NODES = ["plan", "condition", "sample", "describe", "critique", "revise"] as const;
export type NodeName = (typeof NODES)[number];

/** A round as the graph state records it: its images by key into the run's image store. */
export type RoundRecord = Omit<TraceRound, "images"> & { images: string[] };

/** The round's critique as the loop decides with it. */
export interface RoundCritique {
  agreement: number;
  text: string;
  issues: CritiqueIssue[];
}

export const LoopState = Annotation.Root({
  /** The round in progress (1-based). */
  round: Annotation<number>(),
  /** Most rounds (the request's `rounds`). */
  maxRounds: Annotation<number>(),
  /** The plan every round is critiqued against (round 1's: the request as the planner understood it). */
  target: Annotation<string>(),
  /** The plan of the round in progress (round 1's, or the last revision). */
  currentPlan: Annotation<string>(),
  caption: Annotation<string>(),
  guidance: Annotation<number>(),
  /** The round in progress, filled in node by node. */
  pending: Annotation<Partial<RoundRecord>>(),
  /** Finished rounds, in order. */
  trace: Annotation<RoundRecord[]>({ reducer: (done, more) => [...done, ...more], default: () => [] }),
  /** The describer's plan-format description of each image of the round in progress. */
  descriptions: Annotation<string[]>(),
  /** How sure the describer was of each description (descriptionCertainty; null: it cannot tell). */
  certainties: Annotation<(number | null)[]>(),
  /** The critique of the last finished round. */
  lastCritique: Annotation<RoundCritique | null>(),
});

export type LoopStateType = typeof LoopState.State;
export type LoopUpdate = typeof LoopState.Update;

/** Where each node goes next; `critique` decides between `revise` and the end. */
export const TRANSITIONS: Record<NodeName, NodeName | "revise|end"> = {
  plan: "condition",
  condition: "sample",
  sample: "describe",
  describe: "critique",
  critique: "revise|end",
  revise: "condition",
};

/** After a critique: stop at full agreement or at the round limit, else revise. */
export function afterCritique(state: LoopStateType): "revise" | typeof END {
  const last = state.lastCritique;
  return last && (last.agreement >= 1 || state.round >= state.maxRounds) ? END : "revise";
}

export type NodeFn = (state: LoopStateType, threadId: string) => Promise<LoopUpdate>;

/** Compiles the loop over the node implementations, checkpointed by `checkpointer`. */
export function compileLoop(nodes: Record<NodeName, NodeFn>, checkpointer = new MemorySaver()) {
  const graph = new StateGraph(LoopState);
  const threadOf = (config: { configurable?: Record<string, unknown> }) =>
    String(config.configurable?.thread_id);
  for (const name of NODES) graph.addNode(name, (state, config) => nodes[name](state, threadOf(config)));
  const g = graph as unknown as StateGraph<typeof LoopState.spec, LoopStateType, LoopUpdate, string>;
  g.addEdge(START, "plan");
  for (const name of NODES) {
    const next = TRANSITIONS[name];
    if (next === "revise|end") g.addConditionalEdges(name, afterCritique, ["revise", END]);
    else g.addEdge(name, next);
  }
  return { app: g.compile({ checkpointer }), checkpointer };
}

/** Graph steps a run of `rounds` rounds takes at most (langgraph's recursion limit must allow them). */
export function stepsFor(rounds: number): number {
  return 5 * rounds + (rounds - 1) + 2;
}
