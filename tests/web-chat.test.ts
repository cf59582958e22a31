/**
 * The web chat at `/` in real headless Chromium (Debian's, driven by playwright-core) against the real
 * service on the tiny fixtures: type a request, watch the progress, see the image, the plan and the critique
 * rounds; paint a mask, send an edit, see the new image change only inside the mask; reload the session.
 * Every request the page makes must go to the service itself. Screenshot: evals/reports/web-chat.png.
 */
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadLocalEngine } from "../src/client/local.ts";
import { createApp } from "../src/server.ts";
import type {
  EditMessage,
  EditSettings,
  Engine,
  EngineInfo,
  GenerateRequest,
  GenerateResult,
  RunContext,
  SessionState,
  TraceRound,
} from "../src/service/engine.ts";
import { AtelierService } from "../src/service/service.ts";
import {
  changedPixels,
  decode,
  type Json,
  removeDir,
  startTestServer,
  tempDataDir,
} from "./service-harness.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SCREENSHOT = "evals/reports/web-chat.png";
const found = existsSync(CHROMIUM);
if (!found)
  console.warn(
    `web-chat test skipped: no Chromium at ${CHROMIUM} (install Debian's \`chromium\`; .ci/run does, or set CHROMIUM_PATH)`,
  );

describe.skipIf(!found)("web chat in headless Chromium", () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let profile: string;
  let context: BrowserContext;
  let page: Page;
  const foreign: string[] = [];
  /** Origins the page may talk to: the services under test. */
  const origins: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    server = await startTestServer();
    origins.push(server.url);
    profile = mkdtempSync(join(tmpdir(), "atelier-chromium-"));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1180, height: 900 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (origins.some((o) => url.startsWith(`${o}/`)) || url.startsWith("data:") || url.startsWith("blob:"))
        return route.continue();
      foreign.push(url);
      return route.abort();
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (error) => pageErrors.push(error.message));
  });

  afterAll(async () => {
    await context?.close();
    await server?.close();
    if (profile) removeDir(profile);
  });

  /**
   * Every text the progress line shows and every value of the bar, as the page draws them: the mutation
   * records are replayed one by one rather than the DOM read when the observer runs, because several
   * progress events can land in one task and each must still be seen as "<node label> | <value>/<max>".
   */
  const recordProgress = () =>
    page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { progress: string[] }).progress = seen;
      const state = { label: "", value: null as string | null, max: null as string | null };
      new MutationObserver((records) => {
        records.forEach((record, i) => {
          const target = record.target as Element;
          const turn = [...record.addedNodes].find(
            (n): n is Element => n instanceof Element && n.matches(".turn.assistant"),
          );
          if (turn) {
            const bar = turn.querySelector("progress")!;
            state.label = turn.querySelector(".node")!.textContent!;
            state.value = bar.getAttribute("value");
            state.max = bar.getAttribute("max");
          } else if (record.type === "childList" && target.matches(".turn.assistant .node")) {
            state.label = [...record.addedNodes].map((n) => n.textContent).join("");
          } else if (record.type === "attributes" && target.matches(".turn.assistant progress")) {
            const name = record.attributeName as "value" | "max";
            if (name !== "value" && name !== "max") return;
            // The value this mutation set is the old value of the next mutation of the same attribute.
            const next = records.slice(i + 1).find((r) => r.target === target && r.attributeName === name);
            state[name] = next ? next.oldValue : target.getAttribute(name);
          } else return;
          const entry = `${state.label} | ${state.value === null ? "-" : `${state.value}/${state.max ?? 1}`}`;
          if (seen.at(-1) !== entry) seen.push(entry);
        });
      }).observe(document.getElementById("conversation")!, {
        subtree: true,
        childList: true,
        attributes: true,
        attributeOldValue: true,
      });
    });
  const progress = () => page.evaluate(() => (window as unknown as { progress: string[] }).progress);

  const send = async (text: string, turns: number) => {
    await page.fill("#message", text);
    await page.press("#message", "Enter");
    await page.waitForSelector(`.turn.assistant.finished >> nth=${turns - 1}`, { timeout: 30_000 });
  };

  const imageBytes = async (url: string) => decode(new Uint8Array(await (await fetch(url)).arrayBuffer()));

  it("makes an image with live progress, shows its plan and rounds, then edits it inside a painted mask", async () => {
    await page.goto(`${server.url}/`);
    await page.waitForSelector("body[data-ready=true]");
    await expect.poll(() => page.textContent("#engine")).toContain("planner+projection");

    await page.click("#toggle-settings");
    await page.fill("#steps", "6");
    await page.fill("#seed", "");
    await page.fill("#rounds", "1");
    await page.selectOption("#sampler", "euler");
    await page.check("#preview");
    await page.click("#toggle-settings");

    await recordProgress();
    await send("a pink square on a white background", 1);
    const first = page.locator(".turn.assistant").nth(0);
    const seen = await progress();
    expect(seen).toContain("round 1 · denoising step 3/6 | 3/6");
    expect(seen).toContain("round 1 · denoising step 6/6 | 6/6");
    expect(seen.some((s) => s.startsWith("round 1 · planning"))).toBe(true);

    const firstUrl = (await first.locator("img.image").getAttribute("src"))!;
    expect(await first.locator("img.image").evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(64);
    const tokens = await first.locator(".details .plan-tokens").textContent();
    expect(tokens).toMatch(/^<IMG_BEGIN> <STYLE> .* <IMG_END>\s*$/);
    expect(await first.locator(".plan-fields dt").allTextContents()).toEqual([
      "Style",
      "Layout",
      "Objects",
      "Colours",
      "Background",
      "Lighting",
    ]);
    expect(await first.locator(".caption").textContent()).toMatch(/background/);
    expect(await first.locator(".meta").textContent()).toMatch(/^seed \d+ · euler · 6 steps/);
    expect(await first.locator(".round-list li").count()).toBe(1);
    expect(await first.locator(".round-list .agreement").textContent()).toBe(
      "Round 1 · no critique · chosen",
    );
    expect(await first.locator("a.download").getAttribute("href")).toBe(firstUrl);

    // Paint the top-left quarter of the 64×64 image (shown at 192 px): the edit repaints only there.
    await page.click("#mask-toggle");
    const canvas = (await page.locator("#mask-canvas").boundingBox())!;
    await page.fill("#brush", "12");
    await page.mouse.move(canvas.x + 20, canvas.y + 20);
    await page.mouse.down();
    for (const [x, y] of [
      [70, 20],
      [70, 45],
      [20, 45],
      [20, 70],
      [70, 70],
    ])
      await page.mouse.move(canvas.x + x!, canvas.y + y!, { steps: 4 });
    await page.mouse.up();
    expect(await page.textContent("#mask-status")).toMatch(/^\d+ pixels to repaint$/);
    await page.click("#mask-close");

    await send("now make the square blue", 2);
    const second = page.locator(".turn.assistant").nth(1);
    const secondUrl = (await second.locator("img.image").getAttribute("src"))!;
    expect(secondUrl).not.toBe(firstUrl);
    expect(await page.locator(".turn.user").nth(1).locator("img.mask-thumb").isVisible()).toBe(true);
    expect(await second.locator(".meta").textContent()).toContain("inpaint");

    const [before, after] = [await imageBytes(firstUrl), await imageBytes(secondUrl)];
    const changed = changedPixels(before, after);
    expect(changed.length).toBeGreaterThan(0);
    // 70 px of 192 is pixel 23 of 64, plus the brush radius (6 px) and the decoder's 8-px latent cells.
    for (const i of changed) expect(i % 64 < 40 && Math.floor(i / 64) < 40).toBe(true);

    // The session behind the page holds both turns, and the same seed.
    const session = (await page.evaluate(() => location.hash)).slice(1);
    const body = (await (await fetch(`${server.url}/v1/sessions/${session}`)).json()) as Json;
    expect(body.messages.map((m: Json) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
    expect(body.messages[3].seed).toBe(body.messages[1].seed);
    expect(body.messages[2].mask).not.toBeNull();

    // The whole conversation in one picture, with the last turn's rounds open.
    await second.locator(".rounds summary").click();
    const height = await page.evaluate(() => document.getElementById("conversation")!.scrollHeight);
    await page.setViewportSize({ width: 1180, height: height + 140 });
    mkdirSync("evals/reports", { recursive: true });
    await page.screenshot({ path: SCREENSHOT });

    // Reloading the page brings the conversation back from the session.
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    expect(await page.locator(".turn.assistant.finished").count()).toBe(2);
    expect(await page.locator(".turn.assistant img.image").nth(1).getAttribute("src")).toContain(
      body.messages[3].image.id,
    );

    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
  });

  it("shows a failed request as an error in the conversation", async () => {
    await page.click("#new-chat");
    await page.fill("#message", "x".repeat(1100));
    await page.press("#message", "Enter");
    await page.waitForSelector(".turn.assistant.failed");
    expect(await page.textContent(".turn.assistant.failed .error")).toContain("text: must be at most 1024");
  });
  it("shows every critique round with its image and agreement, and the chosen one", async () => {
    const critic = await startCritiqueServer(server.models);
    origins.push(critic.url);
    try {
      await page.goto(`${critic.url}/`);
      await page.waitForSelector("body[data-ready=true]");
      await page.click("#toggle-settings");
      await page.fill("#steps", "2");
      await page.fill("#rounds", "2");
      await page.click("#toggle-settings");
      await recordProgress();
      await send("a red star", 1);
      const seen = (await progress()).map((entry) => entry.split(" | ")[0]);
      // Progress runs through both rounds (the describe/critique labels may be drawn in the same frame).
      expect(seen).toEqual(
        expect.arrayContaining(["round 1 · denoising step 2/2", "round 2 · denoising step 2/2", "done"]),
      );
      const turn = page.locator(".turn.assistant").nth(0);
      expect(await turn.locator(".rounds summary").textContent()).toBe(
        "Critique rounds (2) · agreement 1.00",
      );
      expect(await turn.locator(".round-list .agreement").allTextContents()).toEqual([
        "Round 1 · agreement 0.50",
        "Round 2 · agreement 1.00 · chosen",
      ]);
      expect(await turn.locator(".round-list li p").first().textContent()).toBe("the star should be red");
      const thumbs = await turn
        .locator(".round-list img")
        .evaluateAll((imgs) => imgs.map((img) => (img as HTMLImageElement).naturalWidth));
      expect(thumbs).toEqual([64, 64]);
      // The image shown is the chosen round's.
      const shown = await turn.locator("img.image").getAttribute("src");
      const chosen = await turn.locator(".round-list li.chosen img").getAttribute("src");
      expect(new URL(shown!).pathname).toBe(new URL(chosen!).pathname);
      expect(pageErrors).toEqual([]);
    } finally {
      await critic.close();
    }
  });
});

/**
 * An engine with critique rounds, for the page's rendering of them (the critique loop itself is tested with
 * the agent): two passes of the real engine, the first judged 0.5 with a critique, the second 1.0 and chosen.
 */
class TwoRoundEngine implements Engine {
  readonly info: EngineInfo;

  constructor(private readonly inner: Engine) {
    this.info = { ...inner.info, name: "two-round-critic", critique: true };
  }

  generate(request: GenerateRequest, context: RunContext) {
    return this.rounds(context, (seed, ctx) => this.inner.generate({ ...request, seed }, ctx), request.seed);
  }

  edit(state: SessionState, message: EditMessage, settings: EditSettings, context: RunContext) {
    return this.rounds(
      context,
      (seed, ctx) => this.inner.edit(state, message, { ...settings, seed }, ctx),
      settings.seed,
    );
  }

  private async rounds(
    context: RunContext,
    run: (seed: number, context: RunContext) => Promise<GenerateResult>,
    seed = 100,
  ): Promise<GenerateResult> {
    const trace: TraceRound[] = [];
    let result: GenerateResult | null = null;
    for (const round of [1, 2]) {
      result = await run(seed + round - 1, {
        signal: context.signal,
        onEvent: (event) => context.onEvent({ ...event, round }),
      });
      context.onEvent({ type: "describing", round });
      const critique =
        round === 1 ? { agreement: 0.5, text: "the star should be red" } : { agreement: 1, text: "" };
      context.onEvent({ type: "critique", round, agreement: critique.agreement, critique: critique.text });
      trace.push({ ...result.trace[0]!, round, critique });
    }
    return { ...result!, trace };
  }

  dispose() {
    return this.inner.dispose();
  }
}

async function startCritiqueServer(models: string) {
  const dataDir = tempDataDir();
  const engine = new TwoRoundEngine(await loadLocalEngine({ models, threads: 1 }));
  const service = new AtelierService({ dataDir, engine });
  const http = serve({
    fetch: createApp({ models: () => ({}), service }).fetch,
    port: 0,
    hostname: "127.0.0.1",
  });
  await once(http, "listening");
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    close: async () => {
      http.close();
      (http as Server).closeAllConnections();
      await service.close();
      removeDir(dataDir);
    },
  };
}
