/**
 * Atelier as an MCP server: `generate_image`, `edit_image` and `describe_image` (src/client/tools.ts), with
 * the HTTP routes' zod schemas as input schemas. Results are MCP image content (PNG) plus structured
 * metadata (session, plan, seed, a summary of the trace); denoising steps are sent as progress
 * notifications when the caller asks for them (a progressToken). The same server runs over stdio
 * (`atelier mcp`) and on `/mcp` of the service.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { AtelierClient, ProgressEvent } from "../client/client.ts";
import {
  DescribeImageInput,
  DescribeResult,
  type DescriberSlot,
  describeImage,
  EditImageInput,
  editImage,
  GenerateImageInput,
  generateImage,
  ImageResult,
  type ImageToolResult,
  TOOLS,
} from "../client/tools.ts";
import { VERSION } from "../version.ts";

export interface McpOptions {
  client: AtelierClient;
  describer: DescriberSlot;
}

type ProgressExtra = {
  _meta?: { progressToken?: string | number };
  sendNotification: (notification: {
    method: "notifications/progress";
    params: { progressToken: string | number; progress: number; total?: number; message?: string };
  }) => Promise<void>;
};

/** Denoising steps as MCP progress, increasing across critique rounds (round r step s = (r−1)·N + s). */
function progressOf(extra: ProgressExtra, rounds: number) {
  const token = extra._meta?.progressToken;
  return (event: ProgressEvent) => {
    if (token === undefined || event.type !== "step") return;
    const round = event.round ?? 1;
    const steps = event.steps ?? 1;
    extra
      .sendNotification({
        method: "notifications/progress",
        params: {
          progressToken: token,
          progress: (round - 1) * steps + (event.step ?? 0),
          total: Math.max(round, rounds) * steps,
          message: `round ${round}: denoising step ${event.step}/${steps}`,
        },
      })
      .catch(() => {});
  };
}

function errorResult(error: unknown): CallToolResult {
  const message = error instanceof Error ? error.message : String(error);
  return { content: [{ type: "text", text: message }], isError: true };
}

function imageContent({ result, pngs }: ImageToolResult): CallToolResult {
  return {
    content: [
      ...pngs.map((png) => ({
        type: "image" as const,
        data: Buffer.from(png).toString("base64"),
        mimeType: "image/png",
      })),
      { type: "text", text: JSON.stringify(result) },
    ],
    structuredContent: result,
  };
}

export function createMcpServer({ client, describer }: McpOptions): McpServer {
  const server = new McpServer({ name: "atelier", version: VERSION });

  server.registerTool(
    "generate_image",
    { ...TOOLS.generate_image, inputSchema: GenerateImageInput, outputSchema: ImageResult },
    async (args, extra) => {
      try {
        const onEvent = progressOf(extra as ProgressExtra, args.rounds ?? 1);
        return imageContent(await generateImage(client, args, { onEvent, signal: extra.signal }));
      } catch (error) {
        return errorResult(error);
      }
    },
  );

  server.registerTool(
    "edit_image",
    { ...TOOLS.edit_image, inputSchema: EditImageInput, outputSchema: ImageResult },
    async (args, extra) => {
      try {
        const onEvent = progressOf(extra as ProgressExtra, args.rounds ?? 1);
        return imageContent(await editImage(client, args, { onEvent, signal: extra.signal }));
      } catch (error) {
        return errorResult(error);
      }
    },
  );

  server.registerTool(
    "describe_image",
    { ...TOOLS.describe_image, inputSchema: DescribeImageInput, outputSchema: DescribeResult },
    async (args, extra) => {
      try {
        const result = await describeImage(client, describer, args, extra.signal);
        return { content: [{ type: "text", text: result.plan }], structuredContent: result };
      } catch (error) {
        return errorResult(error);
      }
    },
  );

  return server;
}
