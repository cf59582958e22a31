/**
 * The web chat at `/` in real headless Chromium (Debian's, driven by playwright-core) against the real
 * service on the tiny fixtures: type a request, watch the progress, see the image, the plan and the critique
 * rounds; paint a mask, send an edit, see the new image change only inside the mask; reload the session.
 * Every request the page makes must go to the service itself. Screenshot: evals/reports/web-chat.png.
 */
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { changedPixels, decode, type Json, removeDir, startTestServer } from "./service-harness.ts";

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
  const pageErrors: string[] = [];

  beforeAll(async () => {
    server = await startTestServer();
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
      if (url.startsWith(server.url) || url.startsWith("data:") || url.startsWith("blob:"))
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

  /** Every text the progress line shows and every value of the bar, as the page draws them. */
  const recordProgress = () =>
    page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { progress: string[] }).progress = seen;
      new MutationObserver(() => {
        const turn = [...document.querySelectorAll(".turn.assistant")].at(-1);
        if (!turn) return;
        const node = turn.querySelector(".node")!.textContent!;
        const bar = turn.querySelector("progress")!;
        const entry = `${node} | ${bar.hasAttribute("value") ? `${bar.value}/${bar.max}` : "-"}`;
        if (seen.at(-1) !== entry) seen.push(entry);
      }).observe(document.getElementById("conversation")!, {
        subtree: true,
        childList: true,
        characterData: true,
        attributes: true,
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
});
