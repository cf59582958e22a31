/**
 * The MCP server on `/mcp` of the service (Streamable HTTP, stateless: a fresh server and transport per
 * request). Tools call the service's own routes in this process with the caller's Authorization header,
 * so API keys and ownership apply to MCP callers as to any other client.
 */
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import type { Hono } from "hono";
import { AtelierClient } from "../client/client.ts";
import { DescriberSlot } from "../client/tools.ts";
import { type ApiKeys, unauthorized } from "../service/auth.ts";
import type { ApiEnv } from "../service/routes.ts";
import { createMcpServer } from "./server.ts";

export interface McpRouteOptions {
  keys: ApiKeys;
  /** The describer model folder (describe_image reports itself unavailable without it). */
  describer: string | null;
  publicUrl?: string;
}

export function registerMcpRoute(app: Hono<ApiEnv>, options: McpRouteOptions): void {
  const describer = new DescriberSlot(options.describer);
  app.all("/mcp", async (c) => {
    const authorization = c.req.header("authorization");
    if (options.keys.owner(authorization) === null)
      throw unauthorized("an API key is required (Authorization: Bearer <key>)", "missing_api_key");
    const client = new AtelierClient({
      baseUrl: options.publicUrl ?? new URL(c.req.url).origin,
      headers: authorization ? { authorization } : {},
      fetch: async (request) => app.fetch(request),
    });
    const server = createMcpServer({ client, describer });
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    await server.connect(transport);
    c.req.raw.signal?.addEventListener("abort", () => {
      server.close().catch(() => {});
    });
    return transport.handleRequest(c.req.raw);
  });
}
