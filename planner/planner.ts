/**
 * The planner: turns a conversation into a plan between <IMG_BEGIN> and <IMG_END> (primer, "Introducing
 * Image-Planning Tokens"), revises a plan from a critique, and returns the hidden states of exactly the plan
 * span ("Selective Extraction of Planning States") for the projection layers.
 */
import { BaseStreamer, random, Tensor } from "@huggingface/transformers";
import { parsePlan, printPlan } from "../evals/language/plan.ts";
import type { Scene } from "../evals/scene.ts";
import { AtelierError, invalid } from "../src/errors.ts";
import { PlanGrammarProcessor } from "./constrained.ts";
import { groundingFor } from "./grounding.ts";
import { type DecoderLLM, encode, loadDecoderLLM } from "./llm.ts";
import { repairScene } from "./repair.ts";

export const MAX_PROMPT_CHARS = 1024;

export interface ChatMessage {
  role: "user" | "assistant" | "critique";
  content: string;
}

export interface PlanOptions {
  /** 0 (default) = greedy; otherwise sampled with this temperature. */
  temperature?: number;
  topP?: number;
  /** Seed for sampling (uint32); the same seed gives the same plan. */
  seed?: number;
  /**
   * Grounded decoding (default true): the plan may only use values the conversation gives evidence for
   * (planner/grounding.ts). False leaves only the grammar.
   */
  grounded?: boolean;
  /** Called with the text of each generated token as it is produced. */
  onToken?: (text: string) => void;
}

export interface PlanResult {
  /** Canonical plan text (after repair). */
  text: string;
  scene: Scene;
  /** Tokens in the plan span <IMG_BEGIN>…<IMG_END>. */
  tokens: number;
  /** What repair changed, if anything (empty when the LLM's plan was valid as written). */
  repairs: string[];
}

export interface PlanHiddenStates {
  /** The LLM layers returned, in order (0 = embeddings). */
  layers: number[];
  /** One [S × d] row-major matrix per layer. */
  states: Float32Array[];
  /** S: tokens of the plan span. */
  length: number;
  hiddenSize: number;
  /** The plan span's tokens as text, one per row (what a projection with object slots reads). */
  tokens: string[];
}

/** Validates one user text the way the HTTP API and CLI report it: a 400 naming the field. */
export function checkPromptText(value: unknown, field = "prompt"): string {
  if (typeof value !== "string") throw invalid(field, "must be text");
  if (value.trim().length === 0) throw invalid(field, "must not be empty");
  if (value.length > MAX_PROMPT_CHARS) {
    throw invalid(field, `must be at most ${MAX_PROMPT_CHARS} characters (got ${value.length})`);
  }
  return value;
}

class TokenStreamer extends BaseStreamer {
  private sawPrompt = false;
  constructor(
    private readonly piece: (id: number) => string,
    private readonly onToken: (text: string) => void,
  ) {
    super();
  }
  put(value: bigint[][]): void {
    // generate() first pushes the prompt, then one token per step.
    if (!this.sawPrompt) {
      this.sawPrompt = true;
      return;
    }
    for (const id of value[0]!) this.onToken(this.piece(Number(id)));
  }
  end(): void {}
}

/** Few-shot examples that teach the plan format to an LLM that was not trained on it. */
const FEW_SHOT: ChatMessage[] = [
  { role: "user", content: "draw a big red star at the top left on a white background" },
  {
    role: "assistant",
    content:
      "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 top left <OBJECT> 1 one large star <COLOR> 1 red ; background white <LIGHTING> daylight <IMG_END>",
  },
  { role: "user", content: "two small blue circles to the left of a green square, watercolor, warm light" },
  {
    role: "assistant",
    content:
      "<IMG_BEGIN> <STYLE> watercolor <LAYOUT> 1 anywhere ; 2 anywhere <OBJECT> 1 two small circles ; 2 one medium square <COLOR> 1 blue ; 2 green ; background white <LIGHTING> warm <IMG_END>",
  },
];

export class Planner {
  private pieces: string[] | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /** True when the tokenizer knows the planning tokens (the embedded planner); else few-shot prompting. */
  readonly native: boolean;

  constructor(readonly llm: DecoderLLM) {
    const vocab = llm.tokenizer.get_vocab() as Map<string, number> | Record<string, number>;
    const has = (t: string) => (vocab instanceof Map ? vocab.has(t) : t in vocab);
    this.native = has("<IMG_BEGIN>") && has("<IMG_END>");
  }

  static async load(dir: string): Promise<Planner> {
    return new Planner(await loadDecoderLLM(dir));
  }

  dispose(): Promise<void> {
    return this.llm.dispose();
  }

  /** Plans the image for the last user turn of a conversation (earlier turns give the context of edits). */
  async plan(messages: ChatMessage[], options: PlanOptions = {}): Promise<PlanResult> {
    messages.forEach((m, i) => {
      checkPromptText(m.content, `messages.${i}.content`);
    });
    if (messages.length === 0 || messages.at(-1)!.role === "assistant") {
      throw invalid("messages", "must end with a user or critique turn");
    }
    return this.serialize(() => this.generate(messages, options));
  }

  /** Revision mode: the critique of an image made from `plan` becomes a new turn, answered with a revised plan. */
  revise(
    messages: ChatMessage[],
    plan: string,
    critique: string,
    options: PlanOptions = {},
  ): Promise<PlanResult> {
    return this.plan(
      [...messages, { role: "assistant", content: plan }, { role: "critique", content: critique }],
      options,
    );
  }

  /**
   * One forward pass over the final sequence (conversation + plan), sliced to the plan span.
   * `layers` picks hidden-state outputs of the graph (default: all it has).
   */
  async hiddenStates(messages: ChatMessage[], plan: string, layers?: number[]): Promise<PlanHiddenStates> {
    const wanted = layers ?? this.llm.hiddenStateLayers;
    for (const layer of wanted) {
      if (!this.llm.hiddenStateLayers.includes(layer)) {
        throw new AtelierError(
          `the planner graph has no output hidden_states.${layer} (has ${this.llm.hiddenStateLayers.join(", ") || "none"}); tap it first`,
          { status: 500, code: "hidden_states_missing" },
        );
      }
    }
    const prefix = this.prompt(messages);
    const prefixIds = encode(this.llm, prefix);
    const ids = encode(this.llm, `${prefix} ${plan}`);
    const start = prefixIds.length;
    const length = ids.length - start;
    const outputs = await this.serialize(() => this.forward(ids));
    const hiddenSize = this.llm.config.hidden_size;
    const states = wanted.map((layer) => {
      const tensor = outputs[`hidden_states.${layer}`] as Tensor;
      const data = tensor.data as Float32Array;
      return data.slice(start * hiddenSize, (start + length) * hiddenSize);
    });
    const tokens = ids.slice(start).map((id) => this.llm.tokenizer.decode([id]));
    return { layers: wanted, states, length, hiddenSize, tokens };
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work, work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private prompt(messages: ChatMessage[]): string {
    const conversation = this.native ? messages : [...FEW_SHOT, ...messages];
    // Roles other than user/assistant (critique) are written as user turns for LLMs that only know those.
    const mapped = this.native
      ? conversation
      : conversation.map((m) =>
          m.role === "critique" ? { role: "user", content: `Critique: ${m.content}. Revise the plan.` } : m,
        );
    return this.llm.tokenizer.apply_chat_template(mapped as { role: string; content: string }[], {
      tokenize: false,
      add_generation_prompt: true,
    }) as string;
  }

  private tokenPieces(): string[] {
    if (this.pieces) return this.pieces;
    // The text a token appends after another: decode([ref, id]) minus decode([ref]) keeps leading spaces.
    const tokenizer = this.llm.tokenizer;
    const ref = encode(this.llm, "a")[0]!;
    const base = tokenizer.decode([ref], { skip_special_tokens: false }) as string;
    const size = this.llm.config.vocab_size;
    this.pieces = Array.from({ length: size }, (_, id) =>
      (tokenizer.decode([ref, id], { skip_special_tokens: false }) as string).slice(base.length),
    );
    return this.pieces;
  }

  private async generate(messages: ChatMessage[], options: PlanOptions): Promise<PlanResult> {
    const prompt = this.prompt(messages);
    const inputs = this.llm.tokenizer(prompt, { add_special_tokens: false });
    const promptLength = (inputs.input_ids as Tensor).dims[1]!;
    const pieces = this.tokenPieces();
    const eos = this.llm.config.eos_token_id ?? [];
    const eosIds = Array.isArray(eos) ? eos : [eos];
    const restrictions = options.grounded === false ? undefined : groundingFor(messages);
    const processor = new PlanGrammarProcessor(pieces, eosIds, promptLength, restrictions);
    const sampling = (options.temperature ?? 0) > 0;
    if (sampling) random.seed(options.seed ?? 0);
    const output = (await this.llm.model.generate({
      ...inputs,
      max_new_tokens: this.native ? 128 : 512,
      do_sample: sampling,
      temperature: sampling ? options.temperature : undefined,
      top_p: sampling ? (options.topP ?? 1) : undefined,
      logits_processor: [processor] as never,
      streamer: (options.onToken
        ? new TokenStreamer((id) => pieces[id] ?? "", options.onToken)
        : undefined) as never,
    })) as Tensor;
    const generated = (output.tolist() as bigint[][])[0]!.slice(promptLength).map(Number);
    const text = generated
      .filter((id) => !eosIds.includes(id))
      .map((id) => pieces[id])
      .join("")
      .trim();
    const parsed = parsePlan(text);
    const { scene, repairs } = repairScene(parsed);
    const canonical = printPlan(scene);
    return { text: canonical, scene, tokens: encode(this.llm, canonical).length, repairs };
  }

  private forward(ids: number[]): Promise<Record<string, Tensor>> {
    const n = ids.length;
    const inputs = {
      input_ids: new Tensor("int64", BigInt64Array.from(ids, BigInt), [1, n]),
      attention_mask: new Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]),
    };
    const model = this.llm.model as unknown as (x: typeof inputs) => Promise<Record<string, Tensor>>;
    return model(inputs);
  }
}
