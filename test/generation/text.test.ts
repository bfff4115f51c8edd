// Incremental decoding never splits a multi-byte character; stop strings are held back until they can be ruled out.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { IncrementalDecoder, StopMatcher } from "../../src/generation/text.js";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import { REFERENCE } from "../helpers.js";

const TEXTS = ["héllo wörld — 你好，世界 🎉🚀 naïve café", "plain ascii, then 日本語テキスト and ✓ marks", "🎉"];

for (const kind of ["bytelevel", "metaspace"]) {
  test(`${kind}: deltas are whole characters and join to the decoded text`, () => {
    const tok = TinyTokenizer.fromFolder(join(REFERENCE, "tokenizers", kind));
    let multiByteSplits = 0;
    for (const text of TEXTS) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      const dec = new IncrementalDecoder(tok);
      let out = "";
      for (const [i, id] of ids.entries()) {
        const d = dec.push(id);
        assert.ok(!d.includes("\uFFFD"), `delta ${JSON.stringify(d)} has a broken character`);
        // a token whose own decode is broken is a piece of a character: the decoder must have held it back
        if (tok.decode([id]).includes("\uFFFD") && d === "") multiByteSplits++;
        out += d;
        void i;
      }
      out += dec.flush();
      assert.equal(out, tok.decode(ids, { skipSpecialTokens: true }));
    }
    if (kind === "bytelevel") assert.ok(multiByteSplits > 0, "the texts include characters split across tokens");
  });
}

test("invalid UTF-8 from a model is released after 4 tokens, as the full decode shows it", () => {
  const tok = TinyTokenizer.fromFolder(join(REFERENCE, "tokenizers", "bytelevel"));
  // a lone continuation byte, repeated: never becomes a character
  const id = tok.encode("é", { addSpecialTokens: false }).at(-1) as number;
  const dec = new IncrementalDecoder(tok);
  let out = "";
  for (let i = 0; i < 8; i++) out += dec.push(id);
  out += dec.flush();
  assert.equal(out, tok.decode(new Array(8).fill(id)));
});

test("stop matcher: earliest match, and what may be shown", () => {
  const m = new StopMatcher(["</s>", "\nUSER:"]);
  assert.equal(m.find("abc</s>def"), 3);
  assert.equal(m.find("a\nUSER: x</s>"), 1);
  assert.equal(m.find("nothing"), -1);
  assert.equal(m.safeLength("hello </"), 6); // "</" may start "</s>"
  assert.equal(m.safeLength("hello \nUS"), 6);
  assert.equal(m.safeLength("hello"), 5);
});
