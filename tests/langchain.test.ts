/**
 * The LangChain tools against an in-process service on the tiny fixtures: a LangChain agent loop
 * (createAgent) whose scripted chat model picks the tools — generate, then edit the same session — while
 * the tools run for real; progress as custom events; bad input refused by the routes' zod schemas.
 */
import { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { AIMessage, type BaseMessage, HumanMessage, ToolMessage } from "@langchain/core/messages";
import type { ChatResult } from "@langchain/core/outputs";
import type { StructuredToolInterface } from "@langchain/core/tools";
import { createAgent } from "langchain";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeBase64Png } from "../pipelines/image.ts";
import { AtelierClient } from "../src/client/client.ts";
import { loadLocalEngine } from "../src/client/local.ts";
import { createAtelierTools, type ImageArtifact } from "../src/langchain/tools.ts";
import { AtelierService } from "../src/service/service.ts";
import { fixtureModels, type Json, removeDir, startTestServer, tempDataDir } from "./service-harness.ts";

/**
 * A chat model that follows a script: ask for the picture, then edit it with the session_id the first tool
 * answered, then reply in words. It reads the real tool results to do so.
 */
class ScriptedChatModel extends BaseChatModel {
  boundTools: string[] = [];

  _llmType(): string {
    return "scripted";
  }

  override bindTools(tools: { name: string }[]) {
    this.boundTools = tools.map((t) => t.name);
    return this;
  }

  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const results = messages.filter((m) => ToolMessage.isInstance(m)).map((m) => JSON.parse(m.text) as Json);
    const request = messages.find((m) => HumanMessage.isInstance(m))!.text;
    let message: AIMessage;
    if (results.length === 0)
      message = new AIMessage({
        content: "",
        tool_calls: [{ id: "call_1", name: "generate_image", args: { prompt: request, seed: 31, steps: 3 } }],
      });
    else if (results.length === 1)
      message = new AIMessage({
        content: "",
        tool_calls: [
          {
            id: "call_2",
            name: "edit_image",
            args: { session_id: results[0].session_id, text: "now make the square blue", steps: 3 },
          },
        ],
      });
    else message = new AIMessage(`Here it is: ${results[1].caption}`);
    return { generations: [{ message, text: message.text }] };
  }
}

let service: AtelierService;
let tools: StructuredToolInterface[];
let models: string;
let dataDir: string;

beforeAll(async () => {
  models = fixtureModels();
  dataDir = tempDataDir();
  service = new AtelierService({ dataDir, engine: await loadLocalEngine({ models, threads: 1 }) });
  tools = createAtelierTools(service);
});

afterAll(async () => {
  await service?.close();
  removeDir(models);
  removeDir(dataDir);
});

const pngOf = (artifact: ImageArtifact) => decodeBase64Png(artifact.png_base64[0]!).image;

describe("createAtelierTools with a LangChain agent", () => {
  it("offers generate_image and edit_image with the routes' schemas (describe_image needs a describer)", () => {
    expect(tools.map((t) => t.name)).toEqual(["generate_image", "edit_image"]);
    expect(createAtelierTools(service, { describer: "/nonexistent" }).map((t) => t.name)).toContain(
      "describe_image",
    );
  });

  it("runs an agent loop: the model picks generate_image, then edit_image on the same session", async () => {
    const model = new ScriptedChatModel({});
    const agent = createAgent({ model, tools });
    const { messages } = await agent.invoke({
      messages: [new HumanMessage("a pink square on a white background")],
    });
    expect(model.boundTools).toEqual(["generate_image", "edit_image"]);
    const toolMessages = messages.filter((m: BaseMessage) => ToolMessage.isInstance(m)) as ToolMessage[];
    expect(toolMessages.map((m) => m.name)).toEqual(["generate_image", "edit_image"]);
    const [generated, edited] = toolMessages.map((m) => m.artifact as ImageArtifact);
    expect(generated!.seed).toBe(31);
    expect(generated!.plan).toMatch(/^<IMG_BEGIN> .* <IMG_END>$/);
    expect(generated!.rounds[0]!.mode).toBe("txt2img");
    expect(edited!.session_id).toBe(generated!.session_id);
    expect(edited!.rounds[0]!.mode).toBe("img2img");
    expect(edited!.seed).toBe(31);
    const [a, b] = [pngOf(generated!), pngOf(edited!)];
    expect([a.width, a.height, b.width, b.height]).toEqual([64, 64, 64, 64]);
    expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(false);
    // What the model read is the metadata, not the image bytes.
    expect(JSON.parse(toolMessages[0]!.text)).not.toHaveProperty("png_base64");
    expect(messages.at(-1)!.text).toBe(`Here it is: ${edited!.caption}`);
    // The session holds both turns.
    expect(service.messages(generated!.session_id!)).toHaveLength(4);
  });

  it("reports denoising steps as atelier_progress custom events", async () => {
    const steps: string[] = [];
    await tools[0]!.invoke(
      {
        plan: "<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center <OBJECT> 1 one large star <COLOR> 1 red ; background white <LIGHTING> daylight <IMG_END>",
        steps: 2,
      },
      {
        callbacks: [
          {
            handleCustomEvent(name: string, data: Json) {
              if (name === "atelier_progress" && data.type === "step")
                steps.push(`${data.step}/${data.steps}`);
            },
          },
        ],
      },
    );
    expect(steps).toEqual(["1/2", "2/2"]);
  });

  it("refuses input the route would refuse, naming the field", async () => {
    await expect(tools[0]!.invoke({ prompt: "a star", steps: 0 })).rejects.toThrow(/steps/);
    await expect(tools[0]!.invoke({ prompt: "a star", plan: "<IMG_BEGIN>" })).rejects.toThrow(/plan/);
    await expect(tools[1]!.invoke({ session_id: "sess_nope", text: "blue" })).rejects.toThrow(/no session/);
  });
});

describe("createAtelierTools over HTTP", () => {
  it("calls a running service with its API key; the image URLs it hands out are the service's", async () => {
    const server = await startTestServer({ ATELIER_API_KEYS: "sk-tools" });
    try {
      const [generateTool] = createAtelierTools(
        new AtelierClient({ baseUrl: server.url, apiKey: "sk-tools" }),
      );
      const message = (await generateTool!.invoke({
        id: "call_1",
        name: "generate_image",
        type: "tool_call",
        args: { prompt: "two blue circles", n: 2, seed: 8, steps: 2 },
      })) as ToolMessage;
      const artifact = message.artifact as ImageArtifact;
      expect(artifact.session_id).toBeNull();
      expect(artifact.images.map((i) => i.seed)).toEqual([8, 9]);
      expect(artifact.png_base64).toHaveLength(2);
      const response = await fetch(artifact.images[1]!.url!);
      expect(response.headers.get("content-type")).toBe("image/png");
      expect(Buffer.from(await response.arrayBuffer()).toString("base64")).toBe(artifact.png_base64[1]);
      const denied = createAtelierTools(new AtelierClient({ baseUrl: server.url }))[0]!;
      await expect(denied.invoke({ prompt: "a star" })).rejects.toThrow(/API key is required/);
    } finally {
      await server.close();
    }
  });
});
