/**
 * The first engine behind the service, a single pass over the components that exist: the planner LLM
 * writes the plan; the projection layers turn the plan span's hidden states into the denoiser's
 * conditioning (the design's path: the denoiser never sees raw text); txt2img, img2img or inpaint renders
 * it. Without a projection folder the plan goes to the diffusion model's own text encoder as a full caption
 * of its scene (the captions that encoder was trained on); without a planner the request text does.
 *
 * There is no describer here, so no critique: one round, recorded in the trace format the critique-loop
 * agent uses.
 */
import { type DiffusionModel, loadDiffusionModel } from "../../pipelines/model-folder.ts";
import { SCHEDULER_NAMES } from "../../pipelines/schedulers/index.ts";
import type { ChatMessage } from "../../planner/planner.ts";
import { Planner } from "../../planner/planner.ts";
import { loadProjection, type Projection } from "../../projection/projection.ts";
import { invalid } from "../errors.ts";
import type {
  EditMessage,
  EditSettings,
  Engine,
  EngineInfo,
  GenerateRequest,
  GenerateResult,
  RunContext,
  SessionState,
  Settings,
  TraceRound,
} from "./engine.ts";
import {
  conditionPlan,
  type Planned,
  planConversation,
  plannedFromPlan,
  type Source,
  samplePass,
  sessionConversation,
  since,
} from "./generation.ts";

export interface NativeEngineOptions {
  /** Diffusion model folder (diffusers ONNX layout). */
  ldm: string;
  /** Planner LLM folder (transformers.js layout); optional. */
  planner?: string | null;
  /** Projection folder trained for this planner and denoiser; optional (needs the planner). */
  projection?: string | null;
  /** ONNX Runtime intra-op threads per session. */
  threads?: number;
  /** Check model files against their manifest (default true). */
  verify?: boolean;
}

export class NativeEngine implements Engine {
  readonly info: EngineInfo;

  private constructor(
    private readonly model: DiffusionModel,
    private readonly planner: Planner | null,
    private readonly projection: Projection | null,
  ) {
    this.info = {
      name: projection ? "planner+projection" : planner ? "planner+text-encoder" : "text-encoder",
      sizes: [{ width: model.width, height: model.height }],
      samplers: [...SCHEDULER_NAMES],
      defaultSampler: model.defaultScheduler,
      critique: false,
      planner: planner !== null,
      locks: false,
    };
  }

  static async load(options: NativeEngineOptions): Promise<NativeEngine> {
    const model = await loadDiffusionModel(options.ldm, { threads: options.threads, verify: options.verify });
    let planner: Planner | null = null;
    try {
      planner = options.planner ? await Planner.load(options.planner) : null;
      const projection =
        planner && options.projection
          ? await loadProjection(options.projection, { planner, denoiser: model })
          : null;
      return new NativeEngine(model, planner, projection);
    } catch (error) {
      await Promise.all([model.dispose(), planner?.dispose()]);
      throw error;
    }
  }

  async dispose(): Promise<void> {
    await Promise.all([this.model.dispose(), this.planner?.dispose(), this.projection?.dispose()]);
  }

  async generate(request: GenerateRequest, context: RunContext): Promise<GenerateResult> {
    const started = performance.now();
    const timings: Record<string, number> = {};
    let planned: Planned;
    if (request.plan !== undefined) {
      planned = plannedFromPlan(request.plan);
      context.onEvent({ type: "plan", round: 1, plan: planned.plan!, caption: planned.caption });
    } else {
      planned = await this.planFor([{ role: "user", content: request.prompt! }], context, timings);
    }
    const round = await this.render(planned, null, request, context, timings);
    timings.total = since(started);
    return {
      plans: round.images.map(() => round.plan),
      images: round.images,
      seeds: round.seeds,
      trace: [round],
      timings,
    };
  }

  async edit(
    state: SessionState,
    message: EditMessage,
    settings: EditSettings,
    context: RunContext,
  ): Promise<GenerateResult> {
    if (settings.lock !== undefined)
      throw invalid(
        "lock",
        "needs the agent engine (describer and projection layers); this is the native engine",
      );
    const started = performance.now();
    const timings: Record<string, number> = {};
    const planned = await this.planFor(sessionConversation(state.history, message.text), context, timings);
    const base = message.image ?? state.image;
    const keep = {
      seed: settings.seed ?? state.seed ?? undefined,
      sampler: settings.sampler ?? state.sampler,
    };
    const round = await this.render(
      planned,
      base ? { image: base, mask: message.mask ?? null, strength: settings.strength } : null,
      { ...settings, seed: keep.seed, sampler: keep.sampler ?? undefined },
      context,
      timings,
    );
    timings.total = since(started);
    return {
      plans: round.images.map(() => round.plan),
      images: round.images,
      seeds: round.seeds,
      trace: [round],
      timings,
    };
  }

  private async planFor(
    conversation: ChatMessage[],
    context: RunContext,
    timings: Record<string, number>,
  ): Promise<Planned> {
    if (!this.planner) return { plan: null, caption: conversation.at(-1)!.content, conversation };
    const start = performance.now();
    const planned = await planConversation(this.planner, conversation, 1, context);
    timings.planning = since(start);
    return planned;
  }

  private async render(
    planned: Planned,
    source: Source | null,
    settings: Settings,
    context: RunContext,
    timings: Record<string, number>,
  ): Promise<TraceRound> {
    const models = { model: this.model, planner: this.planner, projection: this.projection };
    let start = performance.now();
    const { via, cond, uncond } = await conditionPlan(models, planned, settings.negative);
    timings.condition = since(start);
    start = performance.now();
    const sampled = await samplePass(this.model, { cond, uncond }, source, settings, 1, context);
    timings.generate = since(start);
    Object.assign(timings, sampled.timings);
    return {
      round: 1,
      plan: planned.plan,
      caption: planned.caption,
      conditioning: via,
      mode: sampled.mode,
      seeds: sampled.seeds,
      settings: sampled.settings,
      images: sampled.images,
      critique: null,
      timings: { ...sampled.timings },
    };
  }
}
