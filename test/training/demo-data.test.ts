// The demo's data, tokenizer, model config and evaluator: same seed → same bytes; pictures show what the scenes say
// (pixel colours at shape centres, nothing drawn elsewhere); every question has exactly one right answer, checked by
// a solver written independently of the generator; train and eval pictures are disjoint; the tokenizer round-trips
// every string and Factory's label masks supervise exactly the answers; the config builds a TinyLLaVA that trains on
// collated batches and reloads from the model folder; the evaluator's normalisation and accuracy.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { IMAGE_PLACEHOLDER, parseTinyLlavaConfig } from "../../src/config/index.js";
import { loadTinyLlava } from "../../src/models/load.js";
import { TinyLlava } from "../../src/models/tinyllava.js";
import { VisionLanguagePipeline } from "../../src/pipeline/index.js";
import { decodeImage, ImageProcessor } from "../../src/processing/image.js";
import { encodeForTraining } from "../../src/processing/templates.js";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import { noGrad, saveSafetensors, tidy } from "../../src/torch/index.js";
import {
  batchToTensors,
  collate,
  factorySpecialIds,
  LlavaDataset,
  type LlavaRecord,
  Rng,
  readLlavaJson,
  toTurns,
} from "../../src/training/data/index.js";
import {
  buildDemoData,
  COLORS,
  DEMO_POSITION_EMBEDDING_SCALE,
  type DemoData,
  demoCorpus,
  demoModelConfig,
  demoTexts,
  EOS_TOKEN,
  type EvalQuestion,
  evaluate,
  evaluateBatched,
  initDemoWeights,
  normalizeAnswer,
  POSITIONS,
  type PreparedDemo,
  prepareDemo,
  preTokenize,
  randomScene,
  renderScene,
  type Scene,
  type SceneObject,
  sceneCaption,
  sceneKey,
  scoreAnswers,
  splitSpecial,
  tokenizerVocabSize,
  writeDemoData,
} from "../../src/training/demo/index.js";
import { factoryStateDict } from "../../src/training/save.js";

const SMALL = { trainImages: 60, evalImages: 15, seed: 7 };

function sha(b: Uint8Array | string): string {
  return createHash("sha256").update(b).digest("hex");
}

function filesOf(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isDirectory()) walk(join(d, e.name), `${rel}${e.name}/`);
      else out.set(`${rel}${e.name}`, sha(readFileSync(join(d, e.name))));
    }
  };
  walk(dir, "");
  return out;
}

// ---- an independent solver: reads the question, lists every answer the scene supports ----
const PLACE_WORDS: Record<string, string> = {
  "at the top": "top",
  "at the bottom": "bottom",
  "on the left": "left",
  "on the right": "right",
  "in the center": "center",
};

function candidates(scene: Scene, question: string): string[] {
  const objs = scene.objects;
  const place = (p: string) => PLACE_WORDS[p] ?? assert.fail(`unknown place phrase "${p}" in "${question}"`);
  let m: RegExpMatchArray | null;
  if (/^How many shapes (are there|are in the picture)\?$/.test(question)) return [String(objs.length)];
  if ((m = question.match(/^Where is the (\w+) (\w+)\?$/)))
    return objs.filter((o) => o.color === m![1] && o.shape === m![2]).map((o) => o.position);
  if ((m = question.match(/^What color is the shape (.+)\?$/)))
    return objs.filter((o) => o.position === place(m![1]!)).map((o) => o.color);
  if ((m = question.match(/^What color is the (\w+)\?$/)))
    return objs.filter((o) => o.shape === m![1]).map((o) => o.color);
  if ((m = question.match(/^What shape is the (\w+) object\?$/)))
    return objs.filter((o) => o.color === m![1]).map((o) => o.shape);
  if ((m = question.match(/^What shape is (.+)\?$/)))
    return objs.filter((o) => o.position === place(m![1]!)).map((o) => o.shape);
  return assert.fail(`the solver does not know the question "${question}"`);
}

/** The sentence reply to a question whose answer is `fact`, written out independently of language.ts. */
function expectedReply(question: string, fact: string): string {
  const phrase = (w: string) => Object.entries(PLACE_WORDS).find(([, p]) => p === w)?.[0] ?? assert.fail(w);
  const an = (w: string) => (/^[aeiou]/.test(w) ? "an" : "a");
  let m: RegExpMatchArray | null;
  if (/^How many shapes/.test(question)) return fact === "1" ? "There is 1 shape." : `There are ${fact} shapes.`;
  if ((m = question.match(/^Where is the (\w+ \w+)\?$/))) return `The ${m[1]} is ${phrase(fact)}.`;
  if ((m = question.match(/^What color is the (.+)\?$/))) return `The ${m[1]} is ${fact}.`;
  if ((m = question.match(/^What shape is the (\w+ object)\?$/))) return `The ${m[1]} is ${an(fact)} ${fact}.`;
  if ((m = question.match(/^What shape is (.+)\?$/))) return `The shape ${m[1]} is ${an(fact)} ${fact}.`;
  return assert.fail(`no reply form for "${question}"`);
}

/** The `object` style's reply: questions keyed by place are answered with the whole object there ("The shape on the
 * left is a red circle."), the others as the sentence style. */
function expectedObjectReply(scene: Scene, question: string, fact: string): string {
  const m = question.match(/^What (?:color is the shape|shape is) ((?:at|on|in) the \w+)\?$/);
  if (!m) return expectedReply(question, fact);
  const o = scene.objects.find((x) => x.position === PLACE_WORDS[m[1]!]) ?? assert.fail(`nothing ${m[1]}`);
  return `The shape ${m[1]} is ${/^[aeiou]/.test(o.color) ? "an" : "a"} ${o.color} ${o.shape}.`;
}

function sceneOf(data: DemoData, image: string | undefined): Scene {
  const img = data.images.find((i) => i.file === image);
  assert.ok(img, `no scene for image ${image}`);
  return img.scene;
}

function qaPairs(r: LlavaRecord): { q: string; a: string }[] {
  const out: { q: string; a: string }[] = [];
  for (let k = 0; k < r.conversations.length; k += 2)
    out.push({ q: r.conversations[k]!.value.replace(/^<image>\n/, ""), a: r.conversations[k + 1]!.value });
  return out;
}

let root: string;
let demo: PreparedDemo;

before(async () => {
  root = mkdtempSync(join(tmpdir(), "tinyllava-demo-data-"));
  demo = await prepareDemo({ dir: join(root, "demo"), ...SMALL });
});
after(() => rmSync(root, { recursive: true, force: true }));

describe("demo scenes and pictures", () => {
  test("the same seed gives the same scenes, texts and file bytes; another seed does not", async () => {
    const a = buildDemoData(SMALL);
    assert.deepEqual(buildDemoData(SMALL), a);
    const other = buildDemoData({ ...SMALL, seed: 8 });
    assert.notDeepEqual(other.images, a.images);
    assert.notDeepEqual(other.finetune, a.finetune);
    // image i does not depend on how many images are made
    const more = buildDemoData({ ...SMALL, trainImages: 80 });
    assert.deepEqual(more.images.slice(0, SMALL.trainImages), a.images.slice(0, SMALL.trainImages));
    const again = join(root, "again");
    await writeDemoData(a, again);
    const first = filesOf(join(root, "demo", "data"));
    assert.equal(first.size, SMALL.trainImages + SMALL.evalImages + 5);
    assert.deepEqual(filesOf(again), first);
  });

  test("scenes follow their rules: 1–3 shapes, distinct places, distinct (colour, shape) pairs, inside their cell", () => {
    const rng = Rng.fromSeed(3);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 500; i++) {
      const s = randomScene(rng);
      assert.ok(s.objects.length >= 1 && s.objects.length <= 3);
      counts[s.objects.length]! += 1;
      assert.equal(new Set(s.objects.map((o) => o.position)).size, s.objects.length);
      assert.equal(new Set(s.objects.map((o) => `${o.color} ${o.shape}`)).size, s.objects.length);
      for (const o of s.objects) {
        const cell = s.size / 3;
        const [col, row] = POSITIONS[o.position];
        assert.ok(o.cx - o.r >= col * cell + 1 - 1e-9 && o.cx + o.r <= (col + 1) * cell - 1 + 1e-9, JSON.stringify(o));
        assert.ok(o.cy - o.r >= row * cell + 1 - 1e-9 && o.cy + o.r <= (row + 1) * cell - 1 + 1e-9, JSON.stringify(o));
        assert.ok(["circle", "square", "triangle"].includes(o.shape));
      }
    }
    for (const n of [1, 2, 3]) assert.ok(counts[n]! > 120, `${n} shapes drawn ${counts[n]} times of 500`);
    assert.throws(() => randomScene(rng, { imageSize: 47 }), /multiple of 3/);
    assert.throws(() => randomScene(rng, { maxShapes: 6 }), /at most 5/);
    assert.throws(() => randomScene(rng, { shapes: ["circle", "hexagon" as "circle"] }), /unknown shape "hexagon"/);
  });

  test("the PNG files decode to the rendered pixels: shape colours at the centres, background everywhere else", async () => {
    const data = demo.data;
    const S = data.options.imageSize;
    for (const img of data.images) {
      const dec = await decodeImage(join(demo.files.imageFolder, img.file));
      assert.equal(dec.width, S);
      assert.equal(dec.height, S);
      assert.ok(Buffer.from(dec.data).equals(Buffer.from(renderScene(img.scene).data)), `${img.file}: pixels differ`);
      const at = (x: number, y: number) => Array.from(dec.data.subarray((y * S + x) * 3, (y * S + x) * 3 + 3));
      for (const o of img.scene.objects)
        assert.deepEqual(
          at(Math.floor(o.cx), Math.floor(o.cy)),
          [...COLORS[o.color]],
          `${img.file}: ${o.color} ${o.shape}`,
        );
      const cell = S / 3;
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++) {
          const inCellOf = img.scene.objects.find(
            (o: SceneObject) =>
              Math.floor(x / cell) === POSITIONS[o.position][0] && Math.floor(y / cell) === POSITIONS[o.position][1],
          );
          const px = at(x, y);
          if (!inCellOf)
            assert.deepEqual(
              px,
              [...img.scene.background],
              `${img.file}: (${x}, ${y}) is drawn outside every shape's cell`,
            );
          else {
            // a drawn pixel is a blend of the background and that shape's colour, channel by channel
            const c = COLORS[inCellOf.color];
            for (let k = 0; k < 3; k++) {
              const lo = Math.min(img.scene.background[k]!, c[k]!);
              const hi = Math.max(img.scene.background[k]!, c[k]!);
              assert.ok(px[k]! >= lo && px[k]! <= hi, `${img.file}: (${x}, ${y}) = ${px}`);
            }
          }
        }
    }
  });

  test("every shape's colour covers its centre and no other colour appears: a scene is what it says", () => {
    const data = buildDemoData({ trainImages: 200, evalImages: 0, seed: 11 });
    for (const { scene } of data.images) {
      const img = renderScene(scene);
      const colours = new Set<string>();
      for (let i = 0; i < img.width * img.height; i++)
        colours.add(Array.from(img.data.subarray(i * 3, i * 3 + 3)).join());
      for (const o of scene.objects) assert.ok(colours.has(COLORS[o.color].join()), `${o.color} missing`);
      const pure = Object.values(COLORS).map((c) => c.join());
      const unexpected = pure.filter((c) => colours.has(c) && !scene.objects.some((o) => COLORS[o.color].join() === c));
      assert.deepEqual(unexpected, []);
    }
  });
});

describe("demo captions and questions", () => {
  test("the LLaVA files are what the training data reader accepts, with images in their split", () => {
    const f = demo.files;
    const opts = { imageFolder: f.imageFolder };
    const pre = readLlavaJson(f.pretrain, { ...opts, template: "pretrain" });
    const fin = readLlavaJson(f.finetune, opts);
    const ev = readLlavaJson(f.eval, opts);
    assert.deepEqual(pre, demo.data.pretrain);
    assert.deepEqual(fin, demo.data.finetune);
    assert.deepEqual(ev, demo.data.eval);
    assert.equal(pre.length, SMALL.trainImages);
    assert.equal(fin.length, SMALL.trainImages);
    assert.equal(ev.length, SMALL.evalImages * 4);
    for (const r of pre) {
      assert.match(r.image!, /^train_\d{5}\.png$/);
      assert.equal(r.conversations[0]!.value, "<image>");
      assert.equal(r.conversations.length, 2);
    }
    for (const r of fin) {
      assert.match(r.image!, /^train_\d{5}\.png$/);
      assert.equal(r.conversations.length, 8, "four question rounds");
      assert.ok(r.conversations[0]!.value.startsWith("<image>\n"));
    }
    for (const r of ev) assert.match(r.image!, /^eval_\d{5}\.png$/);
    const answers = JSON.parse(readFileSync(f.evalAnswers, "utf8")) as EvalQuestion[];
    assert.deepEqual(answers, demo.data.evalAnswers);
    assert.deepEqual(
      answers.map((a) => a.question_id),
      ev.map((r) => r.id),
    );
    const manifest = JSON.parse(readFileSync(f.manifest, "utf8"));
    assert.equal(manifest.counts.evalQuestions, SMALL.evalImages * 4);
    assert.equal(manifest.options.seed, SMALL.seed);
  });

  for (const style of ["sentence", "object", "word"] as const)
    test(`every question has exactly one right answer, and it is the gold one (${style} answers)`, () => {
      const data = buildDemoData({ trainImages: 300, evalImages: 100, seed: 5, answerStyle: style });
      let scene: Scene;
      const reply = (q: string, fact: string) =>
        style === "word" ? fact : style === "object" ? expectedObjectReply(scene, q, fact) : expectedReply(q, fact);
      let n = 0;
      const types = new Map<string, number>();
      for (const r of [...data.finetune, ...data.eval]) {
        scene = sceneOf(data, r.image);
        const pairs = qaPairs(r);
        assert.equal(new Set(pairs.map((p) => p.q)).size, pairs.length, `${r.id}: a question is repeated`);
        for (const { q, a } of pairs) {
          const facts = candidates(scene, q);
          assert.equal(facts.length, 1, `${r.id}: "${q}" in ${sceneKey(scene)}`);
          assert.equal(a, reply(q, facts[0]!), `${r.id}: "${q}" in ${sceneKey(scene)}`);
          n++;
        }
      }
      for (const q of data.evalAnswers) {
        scene = sceneOf(data, q.image);
        assert.deepEqual(candidates(scene, q.question), [q.fact]);
        assert.equal(q.answer, reply(q.question, q.fact));
        types.set(q.type, (types.get(q.type) ?? 0) + 1);
      }
      assert.ok(n > 1500);
      // one question of each type per eval image
      assert.deepEqual(Object.fromEntries(types), { color: 100, shape: 100, count: 100, position: 100 });
      // the facts are single lowercase words or digits
      for (const q of data.evalAnswers) assert.match(q.fact, /^([a-z]+|[1-3])$/);
    });

  test("the default answer style names the whole object for place questions, and a bad one is refused", () => {
    assert.equal(buildDemoData({ trainImages: 2, evalImages: 0 }).options.answerStyle, "object");
    assert.throws(
      () => buildDemoData({ trainImages: 2, answerStyle: "essay" as never }),
      /answerStyle must be one of "word", "sentence", "object", got "essay"/,
    );
  });

  test("captions name every shape with its colour and place, with the right article", () => {
    const rng = Rng.fromSeed(9);
    for (let i = 0; i < 300; i++) {
      const s = randomScene(rng);
      const c = sceneCaption(s, rng);
      for (const o of s.objects) {
        const art = /^[aeiou]/.test(o.color) ? "an" : "a";
        const phrase = Object.entries(PLACE_WORDS).find(([, p]) => p === o.position)![0];
        assert.ok(
          c.toLowerCase().includes(`${art} ${o.color} ${o.shape} ${phrase}`),
          `${c} lacks the ${o.color} ${o.shape}`,
        );
      }
      assert.doesNotMatch(c, /\ba [aeiou]/i);
      assert.match(c, /^[A-Z].*\.$/);
    }
  });

  test("grid captions scan the five places in reading order, naming each shape or nothing", () => {
    const rng = Rng.fromSeed(4);
    const order = ["at the top", "on the left", "in the center", "on the right", "at the bottom"];
    for (let i = 0; i < 200; i++) {
      const s = randomScene(rng);
      const c = sceneCaption(s, rng, 1);
      const parts = c.split(/(?<=\.) /);
      assert.equal(parts.length, 5, c);
      parts.forEach((part, k) => {
        const o = s.objects.find((x) => x.position === PLACE_WORDS[order[k]!]);
        const what = o ? `${/^[aeiou]/.test(o.color) ? "an" : "a"} ${o.color} ${o.shape}` : "nothing";
        assert.equal(part.toLowerCase(), `${order[k]}: ${what}.`, c);
        assert.match(part, /^[A-Z]/);
      });
    }
    // the data's captions: about gridCaptionShare of them are scans, every one still names every shape
    const data = buildDemoData({ trainImages: 1000, evalImages: 0, seed: 2 });
    const scans = data.pretrain.filter((r) => r.conversations[1]!.value.startsWith("At the top: ")).length;
    assert.ok(Math.abs(scans / 1000 - 0.5) < 0.06, `${scans} scans of 1000`);
    const none = buildDemoData({ trainImages: 300, evalImages: 0, seed: 2, gridCaptionShare: 0 });
    assert.equal(none.pretrain.filter((r) => r.conversations[1]!.value.includes(": nothing")).length, 0);
    assert.throws(() => buildDemoData({ gridCaptionShare: 2 }), /gridCaptionShare must be in \[0, 1\], got 2/);
  });

  test("training rounds follow questionWeights; null gives one question per type first; bad weights are refused", () => {
    const FORMS: [RegExp, string][] = [
      [/^How many/, "count"],
      [/^Where is/, "where"],
      [/^What color is the shape /, "colorOfPlace"],
      [/^What color is the /, "colorOfShape"],
      [/ object\?$/, "shapeOfColor"],
      [/^What shape is /, "shapeOfPlace"],
    ];
    const formOf = (q: string) => FORMS.find(([re]) => re.test(q))?.[1] ?? assert.fail(`no form for "${q}"`);
    const forms = (data: DemoData) => data.finetune.map((r) => qaPairs(r).map((p) => formOf(p.q)));
    // only where-questions weigh anything: every object's where-question comes before any other question
    const onlyWhere = buildDemoData({ trainImages: 400, evalImages: 0, seed: 6, questionWeights: { where: 1 } });
    forms(onlyWhere).forEach((fs, i) => {
      const n = onlyWhere.images[i]!.scene.objects.length;
      const w = Math.min(n, 4);
      assert.deepEqual(fs.slice(0, w), new Array(w).fill("where"), `record ${i} (${n} shapes): ${fs}`);
      assert.ok(!fs.slice(w).includes("where"), `record ${i}: ${fs}`);
    });
    // the default weights: most rounds ask what needs the place bound to its object
    const weighted = forms(buildDemoData({ trainImages: 2000, evalImages: 0, seed: 6 })).flat();
    const share = (fs: string[], set: string[]) => fs.filter((f) => set.includes(f)).length / fs.length;
    const bound = ["where", "colorOfPlace", "shapeOfPlace"];
    assert.ok(share(weighted, bound) > 0.72, `bound share ${share(weighted, bound)}`);
    assert.ok(share(weighted, ["count"]) > 0.05 && share(weighted, ["count"]) < 0.12, "count share");
    // null: the first four rounds are one question of each type, as held-out pictures are asked
    const typeOf = (f: string) =>
      ({
        colorOfPlace: "color",
        colorOfShape: "color",
        shapeOfPlace: "shape",
        shapeOfColor: "shape",
        where: "position",
        count: "count",
      })[f];
    const plain = buildDemoData({ trainImages: 300, evalImages: 0, seed: 6, questionWeights: null });
    for (const fs of forms(plain))
      assert.deepEqual(new Set(fs.map(typeOf)), new Set(["color", "shape", "position", "count"]));
    assert.ok(share(forms(plain).flat(), bound) < share(weighted, bound) - 0.12);
    assert.throws(
      () => buildDemoData({ trainImages: 2, questionWeights: { colour: 1 } as never }),
      /questionWeights.colour = 1; expected a finite weight ≥ 0 for one of count, where,/,
    );
    assert.throws(
      () => buildDemoData({ trainImages: 2, questionWeights: { where: -1 } }),
      /questionWeights.where = -1/,
    );
    assert.throws(
      () => buildDemoData({ trainImages: 2, questionWeights: { where: 0 } }),
      /some question form a weight > 0/,
    );
  });

  test("training pictures are mostly multi-shape (singleShapeShare); held-out ones keep 1–3 shapes uniformly", () => {
    const count = (data: ReturnType<typeof buildDemoData>, split: string) => {
      const c = [0, 0, 0, 0];
      for (const i of data.images) if (i.split === split) c[i.scene.objects.length]!++;
      return c;
    };
    const data = buildDemoData({ trainImages: 3000, evalImages: 1500, seed: 3 });
    const tr = count(data, "train");
    const ev = count(data, "eval");
    assert.ok(Math.abs(tr[1]! / 3000 - 0.1) < 0.02, `single-shape share ${tr[1]! / 3000}`);
    assert.ok(Math.abs(tr[2]! - tr[3]!) < 150, `2 vs 3 shapes: ${tr}`);
    for (const k of [1, 2, 3]) assert.ok(Math.abs(ev[k]! / 1500 - 1 / 3) < 0.04, `held-out ${ev}`);
    // null: training pictures drawn like held-out ones; 0: none single-shape
    const uni = count(buildDemoData({ trainImages: 1500, evalImages: 0, seed: 3, singleShapeShare: null }), "train");
    for (const k of [1, 2, 3]) assert.ok(Math.abs(uni[k]! / 1500 - 1 / 3) < 0.04, `uniform ${uni}`);
    assert.equal(
      count(buildDemoData({ trainImages: 500, evalImages: 0, seed: 3, singleShapeShare: 0 }), "train")[1],
      0,
    );
    assert.throws(() => buildDemoData({ singleShapeShare: 1.5 }), /singleShapeShare must be in \[0, 1\]/);
  });

  test("train and eval pictures are disjoint", () => {
    const data = buildDemoData({ trainImages: 500, evalImages: 200, seed: 1 });
    const train = data.images.filter((i) => i.split === "train");
    const ev = data.images.filter((i) => i.split === "eval");
    const trainPixels = new Set(train.map((i) => sha(renderScene(i.scene).data)));
    for (const i of ev)
      assert.ok(!trainPixels.has(sha(renderScene(i.scene).data)), `${i.file} repeats a training picture`);
    const trainFiles = new Set(train.map((i) => i.file));
    for (const r of data.eval) assert.ok(!trainFiles.has(r.image!));
    // a repeated description (drawn again with other sizes and jitter) is common only for one-shape scenes
    const trainKeys = new Set(train.map((i) => sceneKey(i.scene)));
    const seen = ev.filter((i) => trainKeys.has(sceneKey(i.scene)));
    assert.equal(seen.length, data.evalScenesSeenInTraining);
    const seenMulti = seen.filter((i) => i.scene.objects.length === 3).length;
    assert.ok(seenMulti <= 2, `${seenMulti} three-shape eval scenes also in training`);
  });
});

describe("demo tokenizer", () => {
  test("loads with eos = pad = <|endoftext|>, no BOS, and the vocabulary size the config declares", () => {
    const tok = TinyTokenizer.fromFolder(demo.modelDir);
    assert.equal(tok.eosToken, EOS_TOKEN);
    assert.equal(tok.eosTokenId, 0);
    assert.equal(tok.padTokenId, 0);
    assert.equal(tok.bosTokenId, null);
    assert.equal(tok.tokenId("<image>"), 1);
    const json = JSON.parse(readFileSync(join(demo.modelDir, "tokenizer.json"), "utf8"));
    assert.equal(tokenizerVocabSize(json), demo.config.vocab_size);
    assert.equal((demo.config.text_config as { vocab_size: number }).vocab_size, demo.config.vocab_size);
    assert.deepEqual(factorySpecialIds("qwen2", tok), { padTokenId: 0, eosTokenId: 0 });
  });

  test("round-trips every string of the dataset and of its prompts exactly, each corpus word one token", () => {
    const tok = demo.tokenizer;
    const data = demo.data;
    // the captions include place scans, whose words are learned too
    assert.ok(data.pretrain.some((r) => r.conversations[1]!.value.startsWith("At the top: ")));
    const corpus = demoCorpus([
      { records: data.pretrain, template: "pretrain" },
      { records: data.finetune, template: "qwen2_base" },
      { records: data.eval, template: "qwen2_base" },
    ]);
    assert.deepEqual(tok.tokens(" nothing"), ["Ġnothing"]);
    for (const s of [...demoTexts(data), ...corpus]) {
      const ids = tok.encode(s);
      assert.equal(tok.decode(ids, { skipSpecialTokens: false }), s, JSON.stringify(s));
    }
    for (const s of corpus) {
      const specials = s.split(EOS_TOKEN).length - 1 + (s.split("<image>").length - 1);
      const words = splitSpecial(s).flatMap(preTokenize).length;
      assert.equal(tok.encode(s).length, words + specials, `${JSON.stringify(s)}: ${tok.tokens(s).join("|")}`);
    }
    // answers after "ASSISTANT:" are one token (" 2" is two, as in Qwen2, which splits digits off)
    assert.deepEqual(tok.tokens(" circle"), ["Ġcircle"]);
    assert.deepEqual(tok.tokens(" 2"), ["Ġ", "2"]);
  });

  test("any other text still round-trips (byte-level), and decode drops special tokens when asked", () => {
    const tok = demo.tokenizer;
    for (const s of [
      "Wie geht's? Ça va — 😀",
      "tabs\tand\r\nnewlines\n\n  spaces  ",
      "x".repeat(50),
      "<image>\nhi",
      "12345",
    ]) {
      assert.equal(tok.decode(tok.encode(s), { skipSpecialTokens: false }), s);
    }
    assert.equal(tok.decode(tok.encode(`red${EOS_TOKEN}`)), "red");
  });

  test("Factory's label masks match the tokenisation for pretrain and qwen2_base on every sample", () => {
    const tok = demo.tokenizer;
    const decodeSpans = (ids: number[], labels: number[]) => {
      const spans: string[] = [];
      let cur: number[] = [];
      labels.forEach((l, i) => {
        if (l !== -100) {
          assert.equal(l, ids[i]);
          cur.push(l);
        } else if (cur.length) {
          spans.push(tok.decode(cur, { skipSpecialTokens: false }));
          cur = [];
        }
      });
      if (cur.length) spans.push(tok.decode(cur, { skipSpecialTokens: false }));
      return spans;
    };
    for (const r of demo.data.pretrain) {
      const e = encodeForTraining("pretrain", toTurns(r), tok);
      assert.equal(e.inputIds[0], IMAGE_PLACEHOLDER);
      assert.deepEqual(decodeSpans(e.inputIds, e.labels), [`${r.conversations[1]!.value}\n`]);
    }
    for (const r of [...demo.data.finetune, ...demo.data.eval]) {
      // throws LabelMaskError on any count mismatch
      const e = encodeForTraining("qwen2_base", toTurns(r), tok, { padTokenId: 0, eosTokenId: 0 });
      assert.equal(e.inputIds.filter((t) => t === IMAGE_PLACEHOLDER).length, 1);
      // each answer is supervised with the space before it (Factory's −1) and the EOS
      assert.deepEqual(
        decodeSpans(e.inputIds, e.labels),
        qaPairs(r).map((p) => ` ${p.a}${EOS_TOKEN}`),
      );
    }
  });
});

describe("demo model", () => {
  test("the config parses as a Factory TinyLLaVA with the demo's shapes", () => {
    const cfg = parseTinyLlavaConfig(structuredClone(demo.config));
    assert.equal(cfg.source_format, "tinyllava");
    assert.equal(cfg.connector_type, "mlp2x_gelu");
    assert.equal(cfg.text.model_type, "qwen2");
    assert.equal(cfg.vision.model_type, "siglip_vision_model");
    assert.equal(cfg.vision.image_size, demo.data.options.imageSize);
    assert.equal(cfg.vision.image_size % cfg.vision.patch_size, 0);
    assert.equal(cfg.vision_feature_layer, -2);
    assert.equal(cfg.vision_feature_select_strategy, "patch");
    assert.equal(cfg.conv_version, "qwen2_base");
    assert.equal(cfg.text.tie_word_embeddings, true);
    assert.equal(cfg.pad_token_id, 0);
    assert.equal(cfg.text.eos_token_id, 0);
    assert.ok(cfg.tokenizer_model_max_length! >= 128);
    assert.throws(() => demoModelConfig({ vocabSize: 10, imageSize: 50 }), /not a multiple of patch_size/);
  });

  test("builds, initialises deterministically, and trains on collated batches of both stages", async () => {
    const cfg = parseTinyLlavaConfig(structuredClone(demo.config));
    const model = new TinyLlava(cfg, "float32");
    const twin = new TinyLlava(cfg, "float32");
    try {
      initDemoWeights(model, { seed: 3 });
      initDemoWeights(twin, { seed: 3 });
      const twinParams = [...twin.namedParameters()];
      for (const [[n, a], [, b]] of [...model.namedParameters()].map((p, i) => [p, twinParams[i]!] as const))
        assert.ok(
          Buffer.from((a.dataSync() as Float32Array).buffer).equals(Buffer.from((b.dataSync() as Float32Array).buffer)),
          n,
        );
      const params = new Map(model.namedParameters());
      const std = (name: string) => params.get(name)!.std().item();
      const range = (demo.config.text_config as { initializer_range: number }).initializer_range;
      assert.ok(Math.abs(std("language_model.model.embed_tokens.weight") - range) < range / 10);
      const visionWidth = cfg.vision.hidden_size;
      const pos = std("vision_tower.vision_model.embeddings.position_embedding.weight");
      assert.ok(
        Math.abs(pos - DEMO_POSITION_EMBEDDING_SCALE / Math.sqrt(visionWidth)) < 0.2 / Math.sqrt(visionWidth),
        `position embedding std ${pos}`,
      );
      const proc = ImageProcessor.fromFolder(demo.modelDir, cfg.vision);
      const tok = TinyTokenizer.fromFolder(demo.modelDir);
      for (const [file, template] of [
        [demo.files.finetune, "qwen2_base"],
        [demo.files.pretrain, "pretrain"],
      ] as const) {
        const ds = new LlavaDataset({
          dataPath: file,
          imageFolder: demo.files.imageFolder,
          tokenizer: tok,
          template,
          imageProcessor: proc,
        });
        const samples = await Promise.all([0, 1, 2, 3].map(async (i) => (await ds.get(i))!));
        assert.deepEqual(samples[0]!.images[0]!.shape, [3, 48, 48]);
        const batch = collate(samples, { padTokenId: 0, eosTokenId: 0 });
        const t = batchToTensors(batch);
        tidy(() => {
          const out = model.forward({ ...t });
          const loss = out.loss!.item();
          // near-uniform logits at initialisation: about ln(vocab)
          assert.ok(Math.abs(loss - Math.log(cfg.text.vocab_size)) < 1.5, `${template}: initial loss ${loss}`);
          const patches = (cfg.vision.image_size / cfg.vision.patch_size) ** 2 - 1;
          assert.deepEqual(out.logits.shape, [4, batch.inputIds[0]!.length - 1 + patches, cfg.text.vocab_size]);
          out.loss!.backward();
        });
        for (const t2 of Object.values(t)) t2?.dispose();
        for (const [n, p] of model.namedParameters())
          if (n.startsWith("connector.")) assert.ok(p.grad && p.grad.abs().sum().item() > 0, `${n} has no gradient`);
        for (const p of model.parameters()) p.zeroGrad();
      }
    } finally {
      model.dispose();
      twin.dispose();
    }
  });

  test("with weights saved into it, the skeleton is a model folder that reloads exactly and the pipeline runs", async () => {
    const model = new TinyLlava(parseTinyLlavaConfig(structuredClone(demo.config)), "float32");
    initDemoWeights(model, { seed: 1 });
    saveSafetensors(join(demo.modelDir, "model.safetensors"), factoryStateDict(model), { format: "pt" });
    const reloaded = loadTinyLlava(demo.modelDir);
    const pipe = VisionLanguagePipeline.load(demo.modelDir);
    try {
      const tok = TinyTokenizer.fromFolder(demo.modelDir);
      const proc = ImageProcessor.fromFolder(demo.modelDir, model.config.vision);
      const ds = new LlavaDataset({
        dataPath: demo.files.eval,
        imageFolder: demo.files.imageFolder,
        tokenizer: tok,
        template: "qwen2_base",
        imageProcessor: proc,
      });
      const batch = collate(await Promise.all([0, 1, 2].map(async (i) => (await ds.get(i))!)), {
        padTokenId: 0,
        eosTokenId: 0,
      });
      const t = batchToTensors(batch);
      noGrad(() =>
        tidy(() => {
          const a = model.forward({ ...t }).logits;
          const b = reloaded.forward({ ...t }).logits;
          assert.equal(a.sub(b).abs().max().item(), 0);
        }),
      );
      for (const x of Object.values(t)) x?.dispose();

      assert.equal(pipe.template, "qwen2_base");
      assert.ok(pipe.eosTokenIds.includes(0));
      const q = demo.data.evalAnswers[0]!;
      const img = join(demo.files.imageFolder, q.image);
      const px = await pipe.images.preprocess(img);
      assert.deepEqual(px.shape, [3, 48, 48]);
      // the top-left corner is background, about 0 after SigLIP's normalisation ((128/255 − 0.5) / 0.5)
      assert.ok(Math.abs((px.toArray()[0] as number) - (128 / 255 - 0.5) / 0.5) < 1e-6);
      px.dispose();
      // the pipeline's prompt for a question is the one the eval record trains with, up to "ASSISTANT:"
      const prompt = pipe.questionPrompt(q.question, true);
      assert.ok(encodeForTraining("qwen2_base", toTurns(demo.data.eval[0]!), tok).prompt.startsWith(prompt));
      const [a] = await pipe.generate([{ prompt, images: [img] }], { maxNewTokens: 3 });
      assert.ok(a!.tokens.length >= 1 && a!.tokens.length <= 3);
    } finally {
      pipe.dispose();
      reloaded.dispose();
      model.dispose();
    }
  });
});

describe("demo evaluator", () => {
  const qs: EvalQuestion[] = [
    {
      question_id: "a",
      image: "x.png",
      type: "color",
      question: "What color is the circle?",
      answer: "red",
      fact: "red",
    },
    { question_id: "b", image: "x.png", type: "count", question: "How many shapes are there?", answer: "3", fact: "3" },
    { question_id: "c", image: "y.png", type: "count", question: "How many shapes are there?", answer: "1", fact: "1" },
    {
      question_id: "d",
      image: "y.png",
      type: "position",
      question: "Where is the red circle?",
      answer: "The red circle is on the left.",
      fact: "left",
    },
  ];

  test("normalisation: case, punctuation, spaces, articles and number words", () => {
    assert.equal(normalizeAnswer("Red."), "red");
    assert.equal(normalizeAnswer("  RED!\n"), "red");
    assert.equal(normalizeAnswer("three"), "3");
    assert.equal(normalizeAnswer("Three."), "3");
    assert.equal(normalizeAnswer("the left"), "left");
    assert.equal(normalizeAnswer("On the   left,"), "on left");
    assert.equal(normalizeAnswer("a red circle"), "red circle");
    assert.equal(normalizeAnswer("<|endoftext|>"), "endoftext");
    assert.equal(normalizeAnswer(""), "");
  });

  test("exact match after normalisation, overall and per type", () => {
    const r = scoreAnswers(qs, ["Red", "three", "2", "on the left"]);
    assert.equal(r.total, 4);
    assert.equal(r.correct, 2);
    assert.equal(r.accuracy, 0.5);
    assert.deepEqual(r.byType, {
      color: { total: 1, correct: 1, accuracy: 1 },
      count: { total: 2, correct: 1, accuracy: 0.5 },
      position: { total: 1, correct: 0, accuracy: 0 },
    });
    assert.deepEqual(
      r.results.map((x) => x.correct),
      [true, true, false, false],
    );
    // a sentence gold needs the whole sentence (up to case, punctuation and articles), not just the fact
    const d = [qs[3]!];
    assert.equal(scoreAnswers(d, ["the red circle is on the left"]).correct, 1);
    assert.equal(scoreAnswers(d, ["The red circle is at the top."]).correct, 0);
    assert.equal(scoreAnswers(d, ["left"]).correct, 0);
    assert.throws(() => scoreAnswers(qs, ["red"]), /1 predictions for 4 questions/);
    assert.equal(scoreAnswers([], []).accuracy, 0);
  });

  test("evaluate asks each question with its image path; batched evaluation gives the same report", async () => {
    const asked: string[] = [];
    const oracle = (imagePath: string, question: string) => {
      asked.push(`${imagePath}|${question}`);
      return qs.find((q) => q.question === question && imagePath.endsWith(q.image))!.answer.toUpperCase();
    };
    const r = await evaluate(qs, oracle, { imageFolder: "/imgs" });
    assert.equal(r.accuracy, 1);
    assert.deepEqual(
      asked,
      qs.map((q) => `${join("/imgs", q.image)}|${q.question}`),
    );
    const progress: number[] = [];
    const rb = await evaluateBatched(qs, (items) => items.map((it) => oracle(it.imagePath, it.question)), {
      imageFolder: "/imgs",
      batchSize: 3,
      onProgress: (done) => progress.push(done),
    });
    assert.deepEqual(rb, r);
    assert.deepEqual(progress, [3, 4]);
    await assert.rejects(
      evaluateBatched(qs, () => ["x"], { imageFolder: "/imgs" }),
      /gave 1 answers for 4 questions/,
    );
  });
});
