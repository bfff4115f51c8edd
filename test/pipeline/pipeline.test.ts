// The pipeline a user calls: answers, streams, batches and chats, with prompts exactly as the template formats them.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { VisionLanguagePipeline } from "../../src/pipeline/index.js";
import { generationPrompt } from "../../src/processing/templates.js";
import { IMAGES_DIR, MODELS_DIR } from "../generation/cases.js";

let pipe: VisionLanguagePipeline;
const img = join(IMAGES_DIR, "shapes_64x64.png");
const img2 = join(IMAGES_DIR, "gradient_70x45.png");
before(() => {
  pipe = VisionLanguagePipeline.load(join(MODELS_DIR, "tinyllava-siglip-phi"));
});
after(() => pipe.dispose());

test("the template is the checkpoint's family's; EOS ids include the template's separator token", () => {
  assert.equal(pipe.template, "phi");
  const sep = pipe.tokenizer.tokenId("<|endoftext|>");
  if (sep !== null) assert.ok(pipe.eosTokenIds.includes(sep));
  assert.ok(pipe.eosTokenIds.length >= 1);
});

test("answer = the stream's text, stripped; streaming concatenates to it", async () => {
  const a = await pipe.answer("What color is the circle?", img, { maxNewTokens: 10 });
  let s = "";
  const it = pipe.stream("What color is the circle?", img, { maxNewTokens: 10 });
  for (;;) {
    const r = await it.next();
    if (r.done) {
      assert.equal(r.value.text, a.text);
      break;
    }
    s += r.value;
  }
  assert.equal(s.trim(), a.text);
  assert.deepEqual(
    (await pipe.answer("What color is the circle?", img, { maxNewTokens: 10 })).tokens,
    a.tokens,
    "deterministic",
  );
});

test("a batch of prompts with and without images equals answering them one by one", async () => {
  const reqs = [
    { prompt: pipe.questionPrompt("What color is the circle?", true), images: [img] },
    { prompt: pipe.questionPrompt("Tell me a story.", false) },
    { prompt: pipe.questionPrompt("Where is the light?", true), images: [img2] },
  ];
  const batch = await pipe.generate(reqs, { maxNewTokens: 8 });
  for (const [i, r] of reqs.entries()) {
    const [one] = await pipe.generate([r], { maxNewTokens: 8 });
    assert.deepEqual(batch[i]?.tokens, one?.tokens, `prompt ${i}`);
  }
});

test("the image count must match the prompt's <image> placeholders", async () => {
  await assert.rejects(
    pipe.generate([{ prompt: "no placeholder here", images: [img] }]),
    /1 image\(s\) given but the prompt has 0/,
  );
  await assert.rejects(
    pipe.generate([{ prompt: "<image> two <image>", images: [img] }]),
    /1 image\(s\) given but the prompt has 2/,
  );
});

test("chat history is exactly the template's multi-turn prompt; a new image starts a new conversation", async () => {
  const chat = pipe.chat(img);
  const first = chat.promptFor("What is this?");
  assert.equal(first, generationPrompt("phi", [{ role: "user", content: "What is this?" }], { hasImage: true }));
  const it = chat.send("What is this?", { maxNewTokens: 6 });
  let r = await it.next();
  while (!r.done) r = await it.next();
  const a1 = r.value.text;
  assert.equal(chat.history.length, 2);
  const second = chat.promptFor("And then?");
  assert.equal(
    second,
    generationPrompt(
      "phi",
      [
        { role: "user", content: "What is this?" },
        { role: "assistant", content: a1 },
        { role: "user", content: "And then?" },
      ],
      { hasImage: true },
    ),
  );
  assert.equal(second.split("<image>").length - 1, 1, "the image appears once, in the first turn");
  assert.ok(second.startsWith(first.slice(0, first.length - "ASSISTANT:".length)));
  chat.setImage(img2);
  assert.equal(chat.history.length, 0);
  chat.reset();
  assert.equal(chat.promptFor("x"), generationPrompt("phi", [{ role: "user", content: "x" }], { hasImage: true }));
});

test("raw template: the prompt is used verbatim", async () => {
  const raw = VisionLanguagePipeline.load(join(MODELS_DIR, "tinyllava-siglip-phi"), { template: "raw" });
  try {
    assert.equal(raw.questionPrompt("<image>exactly this", true), "<image>exactly this");
    const a = await raw.answer("<image>exactly this", img, { maxNewTokens: 3 });
    assert.equal(a.tokens.length, 3);
  } finally {
    raw.dispose();
  }
});
