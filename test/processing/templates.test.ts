// Factory's conversation templates: the exact prompt strings, and the training label mask of every template on
// multi-turn samples, checked token by token against masks derived independently of Factory's round arithmetic:
// the token span of each answer is found by tokenising prompt prefixes that end at the answer's boundaries.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Tokenizer } from "@huggingface/tokenizers";
import { IMAGE_PLACEHOLDER } from "../../src/config/index.js";
import { ConfigError } from "../../src/errors.js";
import {
  encodeForTraining,
  formatQuestion,
  generationPrompt,
  LabelMaskError,
  promptFor,
  pyStrip,
  pyWordCount,
  renderConversation,
  renderPrompt,
  SYSTEM,
  TEMPLATES,
  type TemplateName,
  type Turn,
} from "../../src/processing/templates.js";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import { factorySpecialIds } from "../../src/training/data/special-tokens.js";
import { REFERENCE } from "../helpers.js";

const MODELS = join(REFERENCE, "models");
const IGNORE = -100;

// ---- tokenizers: the fixture ones, plus two variants of the SentencePiece-style fixture ----
const llamaTok = TinyTokenizer.fromFolder(join(MODELS, "clip-llama")); // metaspace, BOS <s>, legacy (prefix ▁ after specials)
const phiTok = TinyTokenizer.fromFolder(join(MODELS, "siglip-phi")); // byte-level, no BOS, pad == eos == <|endoftext|>
const qwenTok = TinyTokenizer.fromFolder(join(MODELS, "siglip-qwen2"));

function metaspaceJson(): Record<string, unknown> & { added_tokens: unknown[] } {
  return JSON.parse(readFileSync(join(REFERENCE, "tokenizers", "metaspace", "tokenizer.json"), "utf8"));
}

/** A Gemma-like tokenizer: <bos>/<eos>/<pad> special tokens, no dummy prefix (Gemma's add_dummy_prefix false). */
function gemmaLike(): TinyTokenizer {
  const j = metaspaceJson();
  for (const [content, id] of [
    ["<bos>", 657],
    ["<eos>", 658],
    ["<pad>", 659],
  ] as const)
    j.added_tokens.push({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
  j.normalizer = { type: "Replace", pattern: { String: " " }, content: "▁" };
  j.post_processor = {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<bos>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [],
    special_tokens: { "<bos>": { id: "<bos>", ids: [657], tokens: ["<bos>"] } },
  };
  const cfg = { bos_token: "<bos>", eos_token: "<eos>", pad_token: "<pad>", unk_token: "<unk>", add_bos_token: true };
  return new TinyTokenizer(new Tokenizer(j, cfg), cfg, "gemma-like");
}

/** A non-legacy Llama tokenizer: the "▁" prefix only at the start of the text, not after special tokens. */
function nonLegacyLlama(): TinyTokenizer {
  const j = metaspaceJson();
  j.normalizer = null;
  j.pre_tokenizer = { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false };
  const cfg = {
    bos_token: "<s>",
    eos_token: "</s>",
    pad_token: "<unk>",
    unk_token: "<unk>",
    add_bos_token: true,
    legacy: false,
  };
  return new TinyTokenizer(new Tokenizer(j, cfg), cfg, "llama-non-legacy");
}

const gemmaTok = gemmaLike();
const nonLegacyTok = nonLegacyLlama();

const u = (content: string): Turn => ({ role: "user", content });
const a = (content: string): Turn => ({ role: "assistant", content });

const MULTI_TURN: Turn[] = [
  u("What is shown here?\n<image>"),
  a("A red circle."),
  u("How many, 2 or 3?"),
  a("2, exactly."),
  u("Thanks!"),
  a("You're welcome."),
];
const TEXT_ONLY: Turn[] = [u("Say hello."), a("Hello there!"), u("Again"), a("Hi.")];

/** Expected ids and labels, derived from prefix tokenisation: the answer of round r is the text from the space after
 * its "ASSISTANT:" through its eos string; the tokens covering exactly that text are supervised, all else is −100.
 * Also checks that each boundary is a token boundary of the full prompt (else the derivation would not apply). */
function expected(tok: TinyTokenizer, prompt: string, answers: string[], eos: string, answerStart: string) {
  const ids = tok.encodeWithImages(prompt);
  const tokensBefore = (c: number): number => {
    const p = tok.encodeWithImages(prompt.slice(0, c));
    assert.deepEqual(p, ids.slice(0, p.length), `character ${c} of the prompt is not a token boundary`);
    return p.length;
  };
  const labels = ids.map(() => IGNORE);
  const spans: number[][] = [];
  let from = 0;
  for (const ans of answers) {
    const start = prompt.indexOf(answerStart, from) + answerStart.length - 1; // at the separating space
    const end = prompt.indexOf(eos, start) + eos.length;
    assert.equal(prompt.slice(start, end), ` ${ans}${eos}`);
    const [s, e] = [tokensBefore(start), tokensBefore(end)];
    for (let j = s; j < e; j++) labels[j] = ids[j] as number;
    spans.push(ids.slice(s, e));
    from = end;
  }
  return { ids, labels, spans };
}

interface Case {
  template: Exclude<TemplateName, "raw" | "pretrain">;
  tok: TinyTokenizer;
  ids?: { padTokenId: number; eosTokenId: number | null };
  /** the tokenizer's decoder strips one leading space (SentencePiece style) */
  stripsLeadingSpace: boolean;
}

describe("prompt strings", () => {
  test("system, USER/ASSISTANT rounds and each family's eos string", () => {
    const turns = [u("Hi"), a("Hello"), u("Bye"), a("Ciao")];
    for (const [name, eos] of [
      ["phi", "<|endoftext|>"],
      ["qwen2_base", "<|endoftext|>"],
      ["qwen2_instruct", "<|im_end|>"],
      ["llama", "</s>"],
      ["gemma", "<eos>"],
    ] as const) {
      assert.equal(TEMPLATES[name]?.sep, eos);
      assert.equal(
        renderPrompt(name, turns),
        `${SYSTEM} USER: Hi ASSISTANT: Hello${eos}USER: Bye ASSISTANT: Ciao${eos}`,
      );
      assert.deepEqual(
        renderConversation(name, turns)
          .filter((s) => s.target)
          .map((s) => s.text),
        [`Hello${eos}`, `Ciao${eos}`],
      );
    }
    assert.equal(
      SYSTEM,
      "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.",
    );
  });

  test("<image> is moved to the front of its question, which is stripped (Template._prompt)", () => {
    assert.equal(formatQuestion("Describe it.\n<image>"), "<image>\nDescribe it.");
    assert.equal(formatQuestion("  <image> What? <image>  "), "<image>\nWhat?");
    assert.equal(formatQuestion("no image  "), "no image  "); // untouched without the token
    assert.equal(formatQuestion("<image>"), "<image>"); // "<image>\n" stripped
    assert.equal(
      renderPrompt("phi", [u("What is it?\n<image>"), a("A cat.")]),
      `${SYSTEM} USER: <image>\nWhat is it? ASSISTANT: A cat.<|endoftext|>`,
    );
  });

  test("inference prompts end with 'ASSISTANT:' (no space); chat history is kept", () => {
    assert.equal(
      promptFor("phi", "What is it?", { hasImage: true }),
      `${SYSTEM} USER: <image>\nWhat is it? ASSISTANT:`,
    );
    assert.equal(promptFor("llama", " spaced ", { hasImage: true }), `${SYSTEM} USER: <image>\nspaced ASSISTANT:`);
    assert.equal(promptFor("gemma", "q"), `${SYSTEM} USER: q ASSISTANT:`);
    assert.equal(
      generationPrompt("qwen2_instruct", [u("<image>\nq1"), a("a1"), u("q2")]),
      `${SYSTEM} USER: <image>\nq1 ASSISTANT: a1<|im_end|>USER: q2 ASSISTANT:`,
    );
    assert.throws(() => generationPrompt("phi", [u("q"), a("a")]), /end with a user turn/);
  });

  test("pretrain: '<image>' + caption + newline per round, question dropped; generation prompt '<image>'", () => {
    assert.equal(renderPrompt("pretrain", [u("<image>\nDescribe."), a("A cat.")]), "<image>A cat.\n");
    // Factory's format_user is the constant "<image>": present even for a text-only sample
    assert.equal(renderPrompt("pretrain", [u("text only"), a("A cat.")], { hasImage: false }), "<image>A cat.\n");
    assert.equal(promptFor("pretrain", "anything", { hasImage: true }), "<image>");
  });

  test("raw is verbatim; unknown templates and broken turn orders are errors", () => {
    assert.equal(renderPrompt("raw", [u("x"), a("y")]), "xy");
    assert.throws(() => promptFor("vicuna" as never, "q"), /unknown conversation template "vicuna"/);
    assert.throws(
      () => renderPrompt("phi", [a("x"), u("y")]),
      (e: unknown) => e instanceof ConfigError && /turn 0 is "assistant"/.test(String(e)),
    );
    assert.throws(() => renderPrompt("phi", [u("x")]), /complete user\/assistant rounds/);
  });

  test("Python's str.strip / str.split whitespace", () => {
    assert.equal(pyStrip("\x1c\x85 a b \u3000"), "a b"); // \x1c-\x1f and \x85 are Python whitespace, not JS's
    assert.equal(pyStrip("\ufeffa"), "\ufeffa"); // U+FEFF is JS whitespace, not Python's
    assert.equal(pyWordCount("  two\twords\n"), 2);
    assert.equal(pyWordCount("a\x1fb"), 2);
    assert.equal(pyWordCount(""), 0);
  });
});

describe("training label masks (Factory's make_labels)", () => {
  const cases: Case[] = [
    { template: "phi", tok: phiTok, stripsLeadingSpace: false },
    { template: "qwen2_base", tok: qwenTok, stripsLeadingSpace: false },
    // Qwen2-Instruct's tokenizer has eos <|im_end|> and pad <|endoftext|>
    { template: "qwen2_instruct", tok: qwenTok, ids: { padTokenId: 0, eosTokenId: 2 }, stripsLeadingSpace: false },
    // TinyLlama: Factory pads with unk (≠ eos)
    { template: "llama", tok: llamaTok, ids: factorySpecialIds("llama", llamaTok), stripsLeadingSpace: true },
    { template: "llama", tok: nonLegacyTok, ids: factorySpecialIds("llama", nonLegacyTok), stripsLeadingSpace: true },
    { template: "gemma", tok: gemmaTok, ids: factorySpecialIds("gemma", gemmaTok), stripsLeadingSpace: true },
  ];
  for (const c of cases) {
    for (const [kind, turns] of [
      ["image, 3 rounds", MULTI_TURN],
      ["text-only, 2 rounds", TEXT_ONLY],
    ] as const) {
      test(`${c.template} (${c.tok.source.split("/").at(-1)}), ${kind}: token by token`, () => {
        const eos = TEMPLATES[c.template]?.sep as string;
        const enc = encodeForTraining(c.template, turns, c.tok, c.ids ?? {});
        const answers = turns.filter((t) => t.role === "assistant").map((t) => t.content);
        const exp = expected(c.tok, enc.prompt, answers, eos, " ASSISTANT: ");
        assert.equal(enc.prompt, renderPrompt(c.template, turns));
        assert.deepEqual(enc.inputIds, exp.ids);
        assert.deepEqual(enc.labels, exp.labels);
        assert.equal(enc.curLen, enc.inputIds.length);
        assert.equal(enc.totalLen, enc.inputIds.length);
        // the image placeholder, and only in the input
        const images = turns[0]?.content.includes("<image>") ? 1 : 0;
        assert.equal(enc.inputIds.filter((t) => t === IMAGE_PLACEHOLDER).length, images);
        assert.ok(!enc.labels.includes(IMAGE_PLACEHOLDER));
        // supervised text = each answer + its eos string (the space before it, in byte-level tokenizers' output)
        const decoded = exp.spans.map((s) => c.tok.decode(s, { skipSpecialTokens: false }));
        assert.deepEqual(
          decoded,
          answers.map((x) => `${c.stripsLeadingSpace ? "" : " "}${x}${eos}`),
        );
        // labels are the input ids themselves where supervised (the model shifts them)
        for (const [i, l] of enc.labels.entries()) assert.ok(l === IGNORE || l === enc.inputIds[i]);
      });
    }
  }

  test("pretrain: only the leading <image> (and BOS) is masked; the caption and its newline are supervised", () => {
    const turns = [u("Render a clear and concise summary of the photo.\n<image>"), a("a red circle on white")];
    for (const tok of [llamaTok, qwenTok]) {
      const enc = encodeForTraining("pretrain", turns, tok);
      assert.equal(enc.prompt, "<image>a red circle on white\n");
      const head = tok.encodeWithImages("<image>");
      assert.deepEqual(enc.inputIds.slice(0, head.length), head);
      assert.equal(head.at(-1), IMAGE_PLACEHOLDER);
      assert.deepEqual(enc.labels, [...head.map(() => IGNORE), ...enc.inputIds.slice(head.length)]);
      assert.equal(tok.decode(enc.labels.slice(head.length), { skipSpecialTokens: false }), "a red circle on white\n");
    }
  });

  test("pad == eos: Factory adds back the eos strings its pad count skipped", () => {
    const enc = encodeForTraining("phi", MULTI_TURN, phiTok);
    const eosId = phiTok.eosTokenId as number;
    assert.equal(phiTok.padTokenId, eosId);
    const nonPad = enc.inputIds.filter((t) => t !== eosId).length;
    assert.equal(nonPad, enc.inputIds.length - 3); // the three real eos tokens look like padding…
    assert.equal(enc.totalLen, enc.inputIds.length); // …and are added back (prompt.count(eos))
  });

  test("mismatch: pad == eos but the template's eos string is another token → error (Factory masks all)", () => {
    // Qwen2 base tokenizer (pad = eos = <|endoftext|>) with the instruct template (<|im_end|>): Factory adds the 3
    // <|im_end|> strings to total_len although they were counted already
    assert.throws(
      () => encodeForTraining("qwen2_instruct", MULTI_TURN, qwenTok, { where: 'data.json: sample #7 (id "x")' }),
      (e: unknown) =>
        e instanceof LabelMaskError &&
        e.totalLen === e.curLen + 3 &&
        /^data\.json: sample #7 \(id "x"\): tokenization mismatch with template "qwen2_instruct"/.test(e.message),
    );
    // Factory checks only while cur_len < model_max_length
    const long = encodeForTraining("qwen2_instruct", MULTI_TURN, qwenTok, { modelMaxLength: 50 });
    assert.equal(long.totalLen, long.curLen + 3);
  });

  test("mismatch: the Llama legacy flag must match the tokenizer (round lengths adjusted by one)", () => {
    assert.throws(
      () => encodeForTraining("llama", MULTI_TURN, llamaTok, { legacy: false }),
      (e: unknown) => e instanceof LabelMaskError && e.curLen === e.totalLen - 2, // −1 for each of the 2 later rounds
    );
    assert.throws(() => encodeForTraining("llama", MULTI_TURN, nonLegacyTok, { legacy: true }), LabelMaskError);
    // the Llama/Gemma arithmetic assumes a BOS: a tokenizer without one does not fit
    assert.throws(() => encodeForTraining("llama", MULTI_TURN, phiTok), LabelMaskError);
    // and the phi template with a BOS tokenizer counts one BOS per round too many
    assert.throws(
      () => encodeForTraining("phi", TEXT_ONLY, llamaTok, factorySpecialIds("llama", llamaTok)),
      LabelMaskError,
    );
  });

  test("Factory's pad ids: pad = unk for llama/gemma/phi, the tokenizer's pad for qwen2", () => {
    assert.deepEqual(factorySpecialIds("llama", llamaTok), { padTokenId: 0, eosTokenId: 2 });
    assert.deepEqual(factorySpecialIds("gemma", gemmaTok), { padTokenId: 0, eosTokenId: 658 });
    assert.deepEqual(factorySpecialIds("qwen2", qwenTok), { padTokenId: 0, eosTokenId: 0 });
    assert.throws(() => factorySpecialIds("phi", phiTok), /no unk_token/); // the fixture's Phi tokenizer has none
  });
});
