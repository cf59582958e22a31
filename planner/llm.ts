/**
 * A decoder LLM in the transformers.js layout (config.json, tokenizer.json, onnx/model.onnx), loaded with
 * `@huggingface/transformers` from a local folder — never from a hub.
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  env,
  type PreTrainedModel,
  type PreTrainedTokenizer,
  type Tensor,
} from "@huggingface/transformers";
import { AtelierError } from "../src/errors.ts";

env.allowRemoteModels = false;
env.allowLocalModels = true;

export interface DecoderConfig {
  model_type: string;
  hidden_size: number;
  num_hidden_layers: number;
  vocab_size: number;
  eos_token_id?: number | number[];
}

export interface DecoderLLM {
  dir: string;
  config: DecoderConfig;
  tokenizer: PreTrainedTokenizer;
  model: PreTrainedModel;
  /** Layer indexes (0 = embeddings … num_hidden_layers) whose hidden states the graph returns. */
  hiddenStateLayers: number[];
  dispose(): Promise<void>;
}

const REQUIRED_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"];

/** Loads a transformers.js decoder folder; `file` picks another ONNX file in `onnx/` (e.g. a tapped copy). */
export async function loadDecoderLLM(
  dir: string,
  options: { file?: string; threads?: number } = {},
): Promise<DecoderLLM> {
  const root = resolve(dir);
  for (const file of REQUIRED_FILES) {
    if (!existsSync(resolve(root, file))) {
      throw new AtelierError(`planner model folder ${root} has no ${file}`, {
        status: 500,
        code: "model_missing",
      });
    }
  }
  const config = JSON.parse(readFileSync(resolve(root, "config.json"), "utf8")) as DecoderConfig;
  // An absolute path is not a hub id, so transformers.js reads it as a local path as it is.
  const id = root;
  const tokenizer = await AutoTokenizer.from_pretrained(id, { local_files_only: true });
  const model = await AutoModelForCausalLM.from_pretrained(id, {
    local_files_only: true,
    dtype: "fp32",
    model_file_name: options.file?.replace(/\.onnx$/, ""),
    // A planner step is a few small matmuls: one thread beats the cost of waking more for each op.
    session_options: { intraOpNumThreads: options.threads ?? 1, interOpNumThreads: 1 },
  });
  const session = (model as unknown as { sessions: Record<string, { outputNames: string[] }> }).sessions
    .model!;
  const hiddenStateLayers = session.outputNames
    .filter((name) => name.startsWith("hidden_states."))
    .map((name) => Number(name.slice("hidden_states.".length)))
    .sort((a, b) => a - b);
  return {
    dir: root,
    config,
    tokenizer,
    model,
    hiddenStateLayers,
    dispose: async () => {
      await model.dispose();
    },
  };
}

/** Token ids of a text (no special tokens added: chat templates write their own). */
export function encode(llm: DecoderLLM, text: string): number[] {
  const ids = (llm.tokenizer(text, { add_special_tokens: false }).input_ids as Tensor).tolist() as bigint[][];
  return ids[0]!.map(Number);
}
