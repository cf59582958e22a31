/**
 * Describers for real images, chosen by configuration: a transformers.js vision model folder (Florence-2,
 * SmolVLM / Idefics3 and other chat VLMs, or a VisionEncoderDecoder captioner) loaded from a local path,
 * or any LangChain chat model with vision. Both answer in free text; `planFromText` (usually the planner)
 * turns that text into a plan, so the critic always compares plan with plan.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { HumanMessage } from "@langchain/core/messages";
import { parsePlan, printPlan } from "../../evals/language/plan.ts";
import { parseScene, type Scene } from "../../evals/scene.ts";
import { encodeBase64Png, type RgbImage } from "../../pipelines/image.ts";
import type { Planner } from "../../planner/planner.ts";
import { MAX_PROMPT_CHARS } from "../../planner/planner.ts";
import { AtelierError, invalid } from "../errors.ts";
import { type DescribeOptions, type Describer, type Description, loadDescriber } from "./describer.ts";

/** Turns a free-text description of an image into a plan (a Scene, or plan text). */
export type PlanFromText = (text: string, options?: { signal?: AbortSignal }) => Promise<Scene | string>;

export const DEFAULT_DESCRIBE_PROMPT =
  "Describe this image exactly: every object's shape, colour, size and position, how many of each there " +
  "are, the background, whether it is drawn flat, as outlines or in watercolor, and the lighting.";

const PLAN_SPAN = /<IMG_BEGIN>[\s\S]*?<IMG_END>/;

/**
 * planFromText through the planner: a plan span in the text is taken as it is (a capable model may answer
 * in the plan format directly); anything else is planned as if the user had asked for that picture.
 */
export function planFromTextWith(planner: Planner): PlanFromText {
  return async (text) => {
    const span = PLAN_SPAN.exec(text);
    if (span) {
      try {
        return parsePlan(span[0]);
      } catch {
        // Not a valid plan after all: plan from the words instead.
      }
    }
    const words = text.replace(/\s+/g, " ").trim().slice(0, MAX_PROMPT_CHARS);
    if (words.length === 0)
      throw new AtelierError("the describer model answered with no text", { status: 502 });
    return (await planner.plan([{ role: "user", content: words }])).scene;
  };
}

function checkImage(image: RgbImage): void {
  if (!image || image.width < 1 || image.height < 1 || image.data?.length !== image.width * image.height * 3)
    throw invalid("image", "must be an RGB image (width × height × 3 bytes)");
}

async function describeText(
  text: string,
  planFromText: PlanFromText,
  signal?: AbortSignal,
): Promise<Description> {
  const planned = await planFromText(text, { signal });
  const scene = typeof planned === "string" ? parsePlan(planned) : parseScene(planned, "description");
  return { scene, plan: printPlan(scene), confidence: null, text };
}

export interface ChatModelDescriberOptions {
  model: BaseChatModel;
  planFromText: PlanFromText;
  /** The instruction sent with the image (default DEFAULT_DESCRIBE_PROMPT). */
  prompt?: string;
}

/** The text of a chat answer, whether its content is a string or a list of content blocks. */
function answerText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content))
    return content
      .map((block) =>
        typeof block === "string"
          ? block
          : block && typeof block === "object" && (block as { type?: string }).type === "text"
            ? String((block as { text?: unknown }).text ?? "")
            : "",
      )
      .join("");
  return "";
}

/** Any LangChain chat model with vision: one human message holding the prompt and the image as a data URL. */
export function createChatModelDescriber(options: ChatModelDescriberOptions): Describer {
  const { model, planFromText } = options;
  const prompt = options.prompt ?? DEFAULT_DESCRIBE_PROMPT;
  return {
    name: `langchain:${model._llmType()}`,
    async describe(image: RgbImage, opts: DescribeOptions = {}): Promise<Description> {
      checkImage(image);
      const message = new HumanMessage({
        content: [
          { type: "text", text: prompt },
          { type: "image_url", image_url: { url: `data:image/png;base64,${encodeBase64Png(image)}` } },
        ],
      });
      const answer = await model.invoke([message], { signal: opts.signal });
      return describeText(answerText(answer.content), planFromText, opts.signal);
    },
    async dispose() {},
  };
}

export interface TransformersDescriberOptions {
  /** Local folder in the transformers.js layout (config.json, preprocessor_config.json, onnx/…). */
  model: string;
  planFromText: PlanFromText;
  /** Instruction for chat VLMs such as SmolVLM (default DEFAULT_DESCRIBE_PROMPT). */
  prompt?: string;
  /** Florence-2 task token (default "<MORE_DETAILED_CAPTION>"). */
  task?: string;
  maxNewTokens?: number;
  /** ONNX weights variant to load (transformers.js `dtype`, e.g. "fp32", "q8", "q4"). */
  dtype?: string;
}

/** The slice of transformers.js' API used here (its own types are loose across model families). */
interface TensorLike {
  dims: number[];
  slice(...ranges: unknown[]): TensorLike;
}
interface ProcessorLike {
  (...args: unknown[]): Promise<Record<string, TensorLike>>;
  tokenizer: (text: string[] | string) => Record<string, TensorLike>;
  apply_chat_template(messages: unknown[], options: Record<string, unknown>): string;
  batch_decode(ids: TensorLike, options: Record<string, unknown>): string[];
  construct_prompts(task: string): string[];
  post_process_generation(text: string, task: string, size: [number, number]): Record<string, unknown>;
}
interface GeneratorLike {
  generate(inputs: Record<string, unknown>): Promise<TensorLike>;
  dispose(): Promise<unknown>;
}

/**
 * A transformers.js vision model from a local folder, never from a hub: Florence-2 (task prompt), a
 * VisionEncoderDecoder captioner (the image-to-text pipeline), or a chat VLM (SmolVLM, Idefics3, …: chat
 * template with an image turn). The model is loaded once, on first use, and reused.
 */
export function createTransformersDescriber(options: TransformersDescriberOptions): Describer {
  const dir = resolve(options.model);
  const configPath = join(dir, "config.json");
  if (!existsSync(configPath)) throw invalid("describer.model", `${dir} has no config.json`);
  const config = JSON.parse(readFileSync(configPath, "utf8")) as { model_type?: string };
  const family =
    config.model_type === "florence2"
      ? "florence2"
      : config.model_type === "vision-encoder-decoder"
        ? "captioner"
        : "chat";
  const maxNewTokens = options.maxNewTokens ?? 128;
  const task = options.task ?? "<MORE_DETAILED_CAPTION>";
  const prompt = options.prompt ?? DEFAULT_DESCRIBE_PROMPT;
  const dtype = options.dtype;

  type Caption = (image: RgbImage) => Promise<string>;
  let loaded: Promise<{ caption: Caption; dispose: () => Promise<void> }> | null = null;
  const load = async () => {
    const tf = await import("@huggingface/transformers");
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    const common = { local_files_only: true, ...(dtype ? { dtype } : {}) } as Record<string, unknown>;
    const raw = (image: RgbImage) =>
      new tf.RawImage(new Uint8ClampedArray(image.data), image.width, image.height, 3);
    if (family === "captioner") {
      const pipe = (await tf.pipeline("image-to-text", dir, common as never)) as unknown as {
        (image: unknown, options: Record<string, unknown>): Promise<{ generated_text: string }[]>;
        dispose(): Promise<unknown>;
      };
      return {
        caption: async (image: RgbImage) =>
          (await pipe(raw(image), { max_new_tokens: maxNewTokens }))[0]?.generated_text ?? "",
        dispose: async () => {
          await pipe.dispose();
        },
      };
    }
    const processor = (await tf.AutoProcessor.from_pretrained(dir, {
      local_files_only: true,
    })) as unknown as ProcessorLike;
    if (family === "florence2") {
      const model = (await tf.Florence2ForConditionalGeneration.from_pretrained(
        dir,
        common as never,
      )) as unknown as GeneratorLike;
      return {
        caption: async (image: RgbImage) => {
          const rawImage = raw(image);
          const textInputs = processor.tokenizer(processor.construct_prompts(task));
          const visionInputs = await processor(rawImage);
          const ids = await model.generate({ ...textInputs, ...visionInputs, max_new_tokens: maxNewTokens });
          const generated = processor.batch_decode(ids, { skip_special_tokens: false })[0] ?? "";
          const parsed = processor.post_process_generation(generated, task, [image.width, image.height]);
          const value = parsed[task];
          return typeof value === "string" ? value : generated;
        },
        dispose: async () => {
          await model.dispose();
        },
      };
    }
    const model = (await tf.AutoModelForVision2Seq.from_pretrained(
      dir,
      common as never,
    )) as unknown as GeneratorLike;
    return {
      caption: async (image: RgbImage) => {
        const messages = [{ role: "user", content: [{ type: "image" }, { type: "text", text: prompt }] }];
        const text = processor.apply_chat_template(messages, { add_generation_prompt: true });
        const inputs = await processor(text, [raw(image)], { do_image_splitting: false });
        const ids = await model.generate({ ...inputs, max_new_tokens: maxNewTokens, do_sample: false });
        const promptLength = inputs.input_ids!.dims.at(-1)!;
        return (
          processor.batch_decode(ids.slice(null, [promptLength, null]), { skip_special_tokens: true })[0] ??
          ""
        );
      },
      dispose: async () => {
        await model.dispose();
      },
    };
  };
  const ready = () => {
    loaded ??= load().catch((error: unknown) => {
      loaded = null;
      throw new AtelierError(`cannot load the describer model ${dir}: ${(error as Error).message}`, {
        status: 500,
        code: "model_invalid",
        param: "describer.model",
      });
    });
    return loaded;
  };
  return {
    name: `transformers:${dir}`,
    async describe(image: RgbImage, opts: DescribeOptions = {}): Promise<Description> {
      checkImage(image);
      const { caption } = await ready();
      opts.signal?.throwIfAborted();
      return describeText(await caption(image), options.planFromText, opts.signal);
    },
    async dispose() {
      if (loaded) await (await loaded).dispose();
      loaded = null;
    },
  };
}

/** Which describer the agent uses. */
export type DescriberConfig =
  | { kind: "embedded"; dir?: string; threads?: number }
  | ({ kind: "transformers" } & TransformersDescriberOptions)
  | ({ kind: "langchain" } & ChatModelDescriberOptions);

/** Builds the configured describer; errors name the field of `describer` that is wrong. */
export async function createDescriber(config: DescriberConfig): Promise<Describer> {
  if (!config || typeof config !== "object") throw invalid("describer", "must be an object with a kind");
  switch (config.kind) {
    case "embedded":
      return loadDescriber(config.dir, { threads: config.threads });
    case "transformers":
      if (typeof config.model !== "string" || config.model.length === 0)
        throw invalid("describer.model", "must be the path of a local transformers.js model folder");
      if (typeof config.planFromText !== "function")
        throw invalid("describer.planFromText", "must be a function");
      return createTransformersDescriber(config);
    case "langchain":
      if (!config.model || typeof (config.model as { invoke?: unknown }).invoke !== "function")
        throw invalid("describer.model", "must be a LangChain chat model");
      if (typeof config.planFromText !== "function")
        throw invalid("describer.planFromText", "must be a function");
      return createChatModelDescriber(config);
    default:
      throw invalid(
        "describer.kind",
        `must be embedded, transformers or langchain, got ${(config as { kind?: unknown }).kind}`,
      );
  }
}
