/**
 * Atelier as LangChain tools: `createAtelierTools(client | service)` returns `tool()`s whose input schemas
 * are the HTTP routes' zod schemas (generate_image: POST /v1/generations; edit_image: a session message plus
 * session_id; describe_image when a describer folder is given). Each tool answers with its metadata as JSON
 * for the model (session_id, plan, caption, seed, critique rounds) and the PNGs as the ToolMessage's
 * artifact; denoising progress is dispatched as the custom event "atelier_progress" (streamEvents).
 */
import { dispatchCustomEvent } from "@langchain/core/callbacks/dispatch";
import type { RunnableConfig } from "@langchain/core/runnables";
import { type StructuredToolInterface, tool } from "@langchain/core/tools";
import { AtelierClient, type CallOptions } from "../client/client.ts";
import {
  DescribeImageInput,
  DescriberSlot,
  describeImage,
  EditImageInput,
  editImage,
  GenerateImageInput,
  generateImage,
  type ImageResult,
  type ImageToolResult,
  TOOLS,
} from "../client/tools.ts";
import { AtelierService } from "../service/service.ts";

export interface AtelierToolsOptions {
  /** Describer model folder: adds describe_image (loaded on first use). */
  describer?: string;
}

/** What an image tool puts in the ToolMessage's artifact. */
export interface ImageArtifact extends ImageResult {
  /** Base64 PNG of each image. */
  png_base64: string[];
}

function callOptions(config: RunnableConfig | undefined): CallOptions {
  return {
    signal: config?.signal,
    onEvent: (event) => {
      dispatchCustomEvent("atelier_progress", event, config).catch(() => {});
    },
  };
}

const contentAndArtifact = ({ result, pngs }: ImageToolResult): [string, ImageArtifact] => [
  JSON.stringify(result),
  { ...result, png_base64: pngs.map((png) => Buffer.from(png).toString("base64")) },
];

/**
 * Tools over an Atelier service: an `AtelierClient` (a service over HTTP) or an `AtelierService` in this
 * process (called without sockets).
 */
export function createAtelierTools(
  target: AtelierClient | AtelierService,
  options: AtelierToolsOptions = {},
): StructuredToolInterface[] {
  const client = target instanceof AtelierService ? AtelierClient.inProcess(target) : target;
  const tools: StructuredToolInterface[] = [
    tool(async (args, config) => contentAndArtifact(await generateImage(client, args, callOptions(config))), {
      name: "generate_image",
      description: TOOLS.generate_image.description,
      schema: GenerateImageInput,
      responseFormat: "content_and_artifact",
    }),
    tool(async (args, config) => contentAndArtifact(await editImage(client, args, callOptions(config))), {
      name: "edit_image",
      description: TOOLS.edit_image.description,
      schema: EditImageInput,
      responseFormat: "content_and_artifact",
    }),
  ];
  if (options.describer !== undefined) {
    const describer = new DescriberSlot(options.describer);
    tools.push(
      tool(
        async (args, config) => {
          const result = await describeImage(client, describer, args, config?.signal);
          return [JSON.stringify(result), result];
        },
        {
          name: "describe_image",
          description: TOOLS.describe_image.description,
          schema: DescribeImageInput,
          responseFormat: "content_and_artifact",
        },
      ),
    );
  }
  return tools;
}
