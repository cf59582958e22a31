/**
 * The describer adapters' plumbing. No real vision model can be loaded here (no hub), so the LangChain
 * adapter is driven by a small real BaseChatModel subclass written for this test that answers
 * deterministically from the PNG bytes it receives: a fake model, testing the message, image encoding, answer
 * parsing and planFromText path, not any model's vision. The text → plan step runs the real tiny planner.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { AIMessage, type BaseMessage } from "@langchain/core/messages";
import type { ChatResult } from "@langchain/core/outputs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePlan } from "../evals/language/plan.ts";
import { renderScene } from "../evals/render.ts";
import { COLORS, PALETTE, type Scene } from "../evals/scene.ts";
import { decodeBase64Png, type RgbImage } from "../pipelines/image.ts";
import { Planner } from "../planner/planner.ts";
import {
  createChatModelDescriber,
  createDescriber,
  DEFAULT_DESCRIBE_PROMPT,
  planFromTextWith,
} from "../src/agent/describer-adapters.ts";
import { AtelierError } from "../src/errors.ts";

/** Reads the centre pixel's nearest palette colour from the image it is sent; answers in words or as a plan. */
class PixelChatModel extends BaseChatModel {
  prompts: string[] = [];
  images: RgbImage[] = [];
  constructor(private readonly answerAsPlan: boolean) {
    super({});
  }
  _llmType(): string {
    return "pixel-test";
  }
  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const blocks = messages.at(-1)!.content as { type: string; text?: string; image_url?: { url: string } }[];
    this.prompts.push(blocks.find((b) => b.type === "text")!.text!);
    const url = blocks.find((b) => b.type === "image_url")!.image_url!.url;
    const { image } = decodeBase64Png(url.slice(url.indexOf(",") + 1));
    this.images.push(image);
    const k = (32 * image.width + 32) * 3;
    const rgb = [image.data[k]!, image.data[k + 1]!, image.data[k + 2]!];
    const color = COLORS.reduce((best, c) =>
      PALETTE[c].reduce((s, v, i) => s + (v - rgb[i]!) ** 2, 0) <
      PALETTE[best].reduce((s, v, i) => s + (v - rgb[i]!) ** 2, 0)
        ? c
        : best,
    );
    const text = this.answerAsPlan
      ? `Sure. <IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center <OBJECT> 1 one large circle <COLOR> 1 ${color} ; background black <LIGHTING> daylight <IMG_END>`
      : `a large ${color} circle in the center on a black background`;
    return { generations: [{ text, message: new AIMessage(text) }] };
  }
}

const target: Scene = {
  objects: [
    {
      shape: "circle",
      color: "blue",
      size: "large",
      count: 1,
      placement: { kind: "grid", position: "center" },
    },
  ],
  background: "black",
  style: "flat",
  lighting: "daylight",
};

describe("describer adapters", () => {
  let planner: Planner;
  const dirs: string[] = [];
  beforeAll(async () => {
    planner = await Planner.load("tests/fixtures/tiny-planner");
  });
  afterAll(async () => {
    await planner.dispose();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("LangChain: sends the prompt and the exact image, takes a plan span from the answer", async () => {
    const model = new PixelChatModel(true);
    const describer = createChatModelDescriber({ model, planFromText: planFromTextWith(planner) });
    expect(describer.name).toBe("langchain:pixel-test");
    const image = renderScene(target, undefined, 5);
    const description = await describer.describe(image);
    expect(model.prompts).toEqual([DEFAULT_DESCRIBE_PROMPT]);
    expect(model.images[0]!.data).toEqual(image.data);
    expect(description.scene).toEqual(target);
    expect(parsePlan(description.plan)).toEqual(target);
    expect(description.confidence).toBeNull();
    expect(description.text).toMatch(/^Sure\. <IMG_BEGIN>/);
  });

  it("LangChain: a free-text answer is planned by the planner into a valid plan", async () => {
    const model = new PixelChatModel(false);
    const describer = await createDescriber({
      kind: "langchain",
      model,
      planFromText: planFromTextWith(planner),
      prompt: "what is in the picture?",
    });
    const description = await describer.describe(
      renderScene({ ...target, objects: [{ ...target.objects[0]!, color: "green" }] }),
    );
    expect(model.prompts).toEqual(["what is in the picture?"]);
    expect(description.text).toBe("a large green circle in the center on a black background");
    expect(parsePlan(description.plan)).toEqual(description.scene);
  });

  it("a planFromText answer that is not a plan is an error naming the plan", async () => {
    const describer = createChatModelDescriber({
      model: new PixelChatModel(false),
      planFromText: async () => "no plan",
    });
    await expect(describer.describe(renderScene(target))).rejects.toThrow(/^plan: /);
  });

  it("configuration errors name the field", async () => {
    const planFromText = planFromTextWith(planner);
    await expect(createDescriber({ kind: "nope" } as never)).rejects.toThrow(/^describer\.kind: /);
    await expect(createDescriber({ kind: "langchain", model: {} as never, planFromText })).rejects.toThrow(
      /^describer\.model: /,
    );
    await expect(
      createDescriber({
        kind: "langchain",
        model: new PixelChatModel(true),
        planFromText: undefined as never,
      }),
    ).rejects.toThrow(/^describer\.planFromText: /);
    await expect(
      createDescriber({ kind: "transformers", model: "/nonexistent/model", planFromText }),
    ).rejects.toThrow(/^describer\.model: .*config\.json/);
    const describer = createChatModelDescriber({ model: new PixelChatModel(true), planFromText });
    await expect(describer.describe({ width: 2, height: 2, data: new Uint8Array(5) })).rejects.toThrow(
      /^image: /,
    );
  });

  it("transformers.js: a folder without weights fails on first use with a model error, locally", async () => {
    const dir = mkdtempSync(join(tmpdir(), "atelier-vlm-"));
    dirs.push(dir);
    mkdirSync(join(dir, "onnx"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "florence2" }));
    const describer = await createDescriber({
      kind: "transformers",
      model: dir,
      planFromText: planFromTextWith(planner),
    });
    expect(describer.name).toBe(`transformers:${dir}`);
    const failure = describer.describe(renderScene(target));
    await expect(failure).rejects.toBeInstanceOf(AtelierError);
    await expect(describer.describe(renderScene(target))).rejects.toMatchObject({
      code: "model_invalid",
      param: "describer.model",
    });
  });
});
