// The web page end to end in a real browser: Playwright (playwright-core) drives Debian's Chromium (installed by
// `bash scripts/setup.sh --test`), loads the page from the server on a tiny model, uploads an image, asks, and sees
// the answer stream in — the same text the API gives for the same conversation. Then a follow-up turn, regenerate,
// an error shown in the page, a new image starting a new conversation, clear, and the API key field. The screenshot
// is saved as test/serving/artifacts/chat.png. Without /usr/bin/chromium this test fails, saying what to install.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import type { RunningServer } from "../../src/serving/server.js";
import { REFERENCE, ROOT } from "../helpers.js";
import { dataUrl, IMAGES, imageBytes, post, serve } from "./helpers.js";

// the browser's globals, as used inside page.evaluate callbacks (the project compiles without the DOM library)
interface BrowserNode {
  textContent: string | null;
  firstChild: BrowserNode | null;
  nodeType: number;
}
declare const document: {
  querySelector(selector: string): BrowserNode | null;
  querySelectorAll(selector: string): { length: number; [i: number]: BrowserNode };
  getElementById(id: string): BrowserNode | null;
};
declare const window: { seen: string[] };
declare const MutationObserver: new (
  cb: () => void,
) => { observe(target: BrowserNode, o: { subtree: boolean; childList: boolean; characterData: boolean }): void };

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(ROOT, "test", "serving", "artifacts");
// clip-llama's random weights happen to produce letters and words: a screenshot a person can read
const MODEL = join(REFERENCE, "models", "clip-llama");

let context: BrowserContext;
let profile: string;

before(async () => {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: the browser test needs Debian's Chromium — run \`bash scripts/setup.sh --test\` as root, or \`apt-get install -y chromium\``,
  );
  profile = mkdtempSync(join(tmpdir(), "tinyllava-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1100, height: 760 },
  });
});
after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** The text of the n-th (0-based) assistant message, without its meta line. */
const answerText = (page: Page, n: number) =>
  page.evaluate((i) => {
    const el = document.querySelectorAll("#log .msg.assistant")[i];
    return el?.firstChild?.nodeType === 3 /* text */ ? (el.firstChild.textContent ?? "") : null;
  }, n);

/** Records every text the streaming answer shows, to see it arrive in pieces. */
const recordStreaming = (page: Page) =>
  page.evaluate(() => {
    const w = window;
    w.seen = [];
    new MutationObserver(() => {
      const el = document.querySelector("#log .msg.assistant.streaming");
      const t = el?.textContent ?? "";
      if (t && w.seen[w.seen.length - 1] !== t) w.seen.push(t);
    }).observe(document.getElementById("log") as BrowserNode, { subtree: true, childList: true, characterData: true });
  });

async function waitForAnswers(page: Page, n: number): Promise<void> {
  try {
    await page.waitForFunction(
      (k) =>
        document.querySelectorAll("#log .msg.assistant").length === k &&
        document.querySelectorAll("#log .msg.streaming").length === 0,
      n,
      { timeout: 60_000 },
    );
  } catch (e) {
    // what the page showed instead, for the failure message and as an artifact
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "failure.png"), fullPage: true }).catch(() => {});
    const shown = await page.evaluate(() => ({
      error: document.getElementById("error")?.textContent,
      log: document.getElementById("log")?.textContent,
    }));
    throw new Error(`waiting for ${n} answer(s): ${(e as Error).message}; the page shows ${JSON.stringify(shown)}`);
  }
}

describe("the chat page", () => {
  let s: RunningServer;
  before(async () => {
    s = await startFor(MODEL);
  });
  after(() => s.close());

  test("upload an image, ask, watch the streamed answer; follow-up, regenerate, errors, new image, clear", async () => {
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(`${s.url}/`);
    await page.waitForFunction(() => document.getElementById("model")?.textContent === "clip-llama");
    assert.equal(await page.isVisible("#key-box"), false, "no key field when the server needs none");
    // Factory's demo defaults
    assert.equal(await page.inputValue("#temperature-n"), "0.2");
    assert.equal(await page.inputValue("#top-p-n"), "0.7");
    assert.equal(await page.inputValue("#max-tokens-n"), "512");
    // greedy, so the page's answer can be checked against the API's
    await page.fill("#temperature-n", "0");
    await page.fill("#max-tokens-n", "16");

    const image = join(IMAGES, "shapes_64x64.png");
    await page.setInputFiles("#image-input", image);
    await page.waitForSelector("#drop img");
    await recordStreaming(page);
    await page.fill("#prompt", "What is in the image?");
    await page.click("#send");
    await waitForAnswers(page, 1);
    const first = await answerText(page, 0);
    const seen = await page.evaluate(() => window.seen);
    assert.ok(first && first.length > 0, "an answer is shown");
    // streamed: the page showed part of the answer before all of it (the last pieces may come in the same read as
    // the end of the stream, so how many partial states the observer sees depends on the machine's load)
    assert.ok(
      seen.some((t) => t.length < first.length),
      `the answer arrived in pieces: ${JSON.stringify(seen)} before ${JSON.stringify(first)}`,
    );
    for (const t of seen) assert.ok(first.startsWith(t), "each piece is a prefix of the answer");

    const url = dataUrl(imageBytes("shapes_64x64.png"));
    const firstTurn = {
      role: "user",
      content: [
        { type: "text", text: "What is in the image?" },
        { type: "image_url", image_url: { url } },
      ],
    };
    const api = async (messages: unknown[]) => {
      const r = await post(`${s.url}/v1/chat/completions`, { messages, temperature: 0, top_p: 0.7, max_tokens: 16 });
      assert.equal(r.status, 200, r.text);
      return (r.json as { choices: { message: { content: string } }[] }).choices[0]?.message.content;
    };
    assert.equal(first, await api([firstTurn]), "the page shows what the API answers");
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "chat.png"), fullPage: true });

    // a follow-up turn carries the conversation (the image stays in the first turn)
    await page.fill("#prompt", "And which colours?");
    await page.press("#prompt", "Enter");
    await waitForAnswers(page, 2);
    const second = await answerText(page, 1);
    assert.equal(
      second,
      await api([firstTurn, { role: "assistant", content: first }, { role: "user", content: "And which colours?" }]),
    );
    // regenerate replaces the last answer (greedy: the same one)
    await page.click("#regenerate");
    await waitForAnswers(page, 2);
    assert.equal(await answerText(page, 1), second);
    assert.equal(await page.locator("#log .msg").count(), 4);
    await page.screenshot({ path: join(ARTIFACTS, "chat-2-turns.png"), fullPage: true });

    // an error from the server is shown in the page, and the page goes on working
    await page.fill("#max-tokens-n", "100000");
    await page.fill("#prompt", "One more?");
    await page.click("#send");
    await page.waitForSelector("#error:not(.hidden)");
    assert.match((await page.textContent("#error")) ?? "", /max_tokens.*outside the range/);
    assert.equal(await page.locator("#log .msg").count(), 4, "no empty answer, the question taken back");
    assert.equal(await page.inputValue("#prompt"), "One more?", "the question is back in the input box");
    await page.fill("#max-tokens-n", "8");
    await page.click("#regenerate");
    await waitForAnswers(page, 2);
    assert.equal(await page.isVisible("#error"), false, "the error is cleared by the next request");
    assert.equal(await page.locator("#log .msg").count(), 4);

    // a new image starts a new conversation
    await page.setInputFiles("#image-input", join(IMAGES, "gradient_70x45.png"));
    await page.waitForFunction(() => document.querySelectorAll("#log .msg").length === 0);
    assert.match((await page.textContent("#empty")) ?? "", /Ask a question about the image/);
    await page.fill("#prompt", "Where is the light?");
    await page.click("#send");
    await waitForAnswers(page, 1);
    assert.equal(await page.locator("#log .msg").count(), 2);
    // clear: no conversation, no image; asking now says to choose an image
    await page.click("#clear");
    assert.equal(await page.locator("#log .msg").count(), 0);
    assert.equal(await page.locator("#drop img").count(), 0);
    await page.fill("#prompt", "Hello?");
    await page.click("#send");
    await page.waitForSelector("#error:not(.hidden)");
    assert.match((await page.textContent("#error")) ?? "", /Choose an image first/);
    assert.deepEqual(pageErrors, [], "no script errors");
    await page.close();
  });
});

describe("the chat page with an API key", () => {
  let s: RunningServer;
  before(async () => {
    s = await startFor(MODEL, "page-key");
  });
  after(() => s.close());

  test("the key field appears; without the key the 401 is shown; with it the answer streams", async () => {
    const page = await context.newPage();
    await page.goto(`${s.url}/`);
    await page.waitForSelector("#key-box:not(.hidden)");
    await page.setInputFiles("#image-input", join(IMAGES, "gray_50x50.png"));
    await page.waitForSelector("#drop img");
    await page.fill("#max-tokens-n", "6");
    await page.fill("#prompt", "What is this?");
    await page.click("#send");
    await page.waitForSelector("#error:not(.hidden)");
    assert.match((await page.textContent("#error")) ?? "", /didn't provide an API key.*missing_api_key/);
    await page.fill("#api-key", "page-key");
    await page.fill("#prompt", "What is this?");
    await page.click("#send");
    await waitForAnswers(page, 1);
    assert.ok(((await answerText(page, 0)) ?? "").length > 0);
    assert.equal(await page.isVisible("#error"), false);
    await page.close();
  });
});

function startFor(dir: string, apiKey?: string): Promise<RunningServer> {
  return serve({ model: { kind: "folder", dir }, apiKey: apiKey ?? null });
}
