import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { openLocalService } from "../client/local.ts";
import { DescriberSlot } from "../client/tools.ts";
import { createMcpServer } from "../mcp/server.ts";

export const usage = `atelier mcp [--models DIR] [--data DIR]

Runs Atelier as an MCP server on stdin/stdout (for MCP clients that start servers as commands), with the
models loaded in this process. Tools: generate_image, edit_image (sessions), describe_image.
  --models DIR   model folders ldm/, planner/, projection/, describer/ (default: $ATELIER_MODELS or models)
  --data DIR     keep sessions and images in DIR (default: a temporary folder removed at exit)
The service (\`atelier serve\`) offers the same tools over Streamable HTTP at /mcp.
Client configuration: {"command": "npx", "args": ["atelier", "mcp"], "cwd": "<this repository>"}`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { models: { type: "string" }, data: { type: "string" } },
    strict: true,
  });
  // stdout carries the protocol: anything a library logs goes to stderr.
  console.log = console.error;
  console.info = console.error;
  const temporary = values.data === undefined ? mkdtempSync(join(tmpdir(), "atelier-mcp-")) : null;
  const local = await openLocalService({
    models: values.models,
    dataDir: temporary ?? resolve(values.data!),
  });
  const describer = new DescriberSlot(local.describer);
  const server = createMcpServer({ client: local.client, describer });
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((done) => {
    transport.onclose = done;
    process.stdin.once("end", done);
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
  });
  await server.connect(transport);
  console.error(`atelier mcp: ready (${local.service.engine?.info.name})`);
  await closed;
  await server.close().catch(() => {});
  await describer.dispose();
  await local.close();
  if (temporary) rmSync(temporary, { recursive: true, force: true });
  return 0;
}
