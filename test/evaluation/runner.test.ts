// The benchmark runner in-process on a tiny real model (answers are gibberish; the prompts, files, sharding, resuming
// and batching are what is checked): Factory's get_chunk, the prompts model_vqa_*.py build, the answers line format,
// batch size N = batch size 1, resuming after an interruption or a crash, the merge checks, and clear errors.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import sharp from "sharp";
import { scoreMmmu } from "../../src/evaluation/index.js";
import {
  answerLine,
  benchmarkSpec,
  chunkFiles,
  chunkRange,
  getChunk,
  mergeAnswers,
  mmmuRandomChoice,
  RUN_BENCHMARKS,
  type RunOptions,
  readQuestions,
  runBenchmark,
  SCIENCEQA_SUFFIX,
  shortuuidEncode,
  splitList,
} from "../../src/evaluation/runner/index.js";
import { VisionLanguagePipeline } from "../../src/pipeline/index.js";
import { FIXTURES, REFERENCE } from "../helpers.js";
import { EVAL_FIXTURES } from "./helpers.js";

const RUN_FIXTURES = join(FIXTURES, "eval-run");
const MODEL = join(REFERENCE, "models", "tinyllava-siglip-phi");
const TOKENS = 5;

let pipe: VisionLanguagePipeline;
let tmp: string;
const images: Record<string, string> = {};

/** Small distinct pictures (a coloured square on a background) for every image a question file names. */
async function drawImages(dir: string, names: string[]): Promise<void> {
  for (const [i, n] of [...new Set(names)].entries()) {
    const p = join(dir, n);
    mkdirSync(dirname(p), { recursive: true });
    const square = await sharp({
      create: { width: 10, height: 10, channels: 3, background: { r: 255 - ((70 * i) % 256), g: 20, b: 50 * i } },
    })
      .png()
      .toBuffer();
    const img = sharp({
      create: { width: 32 + 8 * i, height: 28 + 4 * i, channels: 3, background: { r: (70 * i) % 256, g: 140, b: 90 } },
    }).composite([{ input: square, left: 3 + i, top: 5 }]);
    await (n.endsWith(".png") ? img.png() : img.jpeg()).toFile(p);
  }
}

before(async () => {
  pipe = VisionLanguagePipeline.load(MODEL);
  tmp = mkdtempSync(join(tmpdir(), "tinyllava-runner-"));
  for (const b of ["pope", "scienceqa", "vqav2", "mmmu"]) {
    const spec = benchmarkSpec(b);
    const qs = readQuestions(spec, join(RUN_FIXTURES, b, spec.questionFile));
    images[b] = join(tmp, "images", b);
    await drawImages(
      images[b] as string,
      qs.flatMap((q) => (q.image ? [q.image] : [])),
    );
  }
});
after(() => {
  pipe.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

let counter = 0;
const fresh = (name: string) => join(tmp, `${counter++}-${name}`);

function run(benchmark: string, answersPath: string, o: Partial<RunOptions> = {}) {
  return runBenchmark({
    benchmark,
    dataDir: join(RUN_FIXTURES, benchmark),
    imagesDir: images[benchmark],
    answersPath,
    modelPath: MODEL,
    loadModel: () => pipe,
    maxNewTokens: TOKENS,
    ...o,
  });
}

const lines = (p: string) => readFileSync(p, "utf8").split("\n").filter(Boolean);

test("chunks are Factory's get_chunk: ceil(len/n) contiguous questions; chunks past the end are empty", () => {
  const ten = Array.from({ length: 10 }, (_, i) => i);
  assert.deepEqual(splitList(ten, 3), [
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9],
  ]);
  assert.deepEqual(
    [0, 1, 2].map((k) => getChunk(ten, 3, k)),
    splitList(ten, 3),
  );
  // 5 questions in 4 chunks: split_list gives 3 chunks (2, 2, 1); the 4th (an IndexError in Factory) is empty
  const five = [0, 1, 2, 3, 4];
  assert.deepEqual(splitList(five, 4), [[0, 1], [2, 3], [4]]);
  assert.deepEqual(getChunk(five, 4, 3), []);
  assert.deepEqual(chunkRange(5, 4, 3), [5, 5]);
  assert.deepEqual(getChunk(five, 1, 0), five);
  assert.throws(() => getChunk(five, 2, 2), /chunk-idx 2: expected an integer ≥ 0 and < num-chunks 2/);
  assert.throws(() => getChunk(five, 0, 0), /num-chunks 0/);
});

test("prompts are model_vqa_science's: equal to the phi-template prompts of the ScienceQA fixture answers", () => {
  const spec = benchmarkSpec("scienceqa");
  const qs = readQuestions(spec, join(EVAL_FIXTURES, "scienceqa", "llava_test_CQM-A.json"));
  const want = new Map(
    lines(join(EVAL_FIXTURES, "scienceqa", "answers.jsonl")).map((l) => {
      const a = JSON.parse(l);
      return [a.question_id, a.prompt];
    }),
  );
  let withImage = 0;
  for (const q of qs) {
    const prompt = pipe.questionPrompt(q.message, q.image !== null);
    assert.equal(prompt, want.get(q.questionId), `question ${q.questionId}`);
    assert.ok(q.message.endsWith(SCIENCEQA_SUFFIX));
    // the image token only where the entry has an image (the text-only questions get a text-only prompt)
    assert.equal(prompt.includes("<image>"), q.image !== null);
    if (q.image) withImage++;
  }
  assert.ok(withImage > 0 && withImage < qs.length, "the fixture has questions with and without images");
});

test("prompts of the other scripts: <image>\\n + the question file's text (its answer-format suffix included)", () => {
  for (const b of ["pope", "vqav2"]) {
    const spec = benchmarkSpec(b);
    const [q] = readQuestions(spec, join(RUN_FIXTURES, b, spec.questionFile));
    assert.ok(q?.text.endsWith("\nAnswer the question using a single word or phrase."));
    assert.equal(q?.message, `<image>\n${q?.text}`);
    assert.equal(spec.promptField, "question");
    assert.equal(spec.maxNewTokens, 128);
  }
  const mmmu = readQuestions(benchmarkSpec("mmmu"), join(RUN_FIXTURES, "mmmu", "anns_for_eval.json"));
  assert.equal(mmmu[0]?.message, `<image>\n${mmmu[0]?.text}`);
  assert.equal(mmmu[1]?.image, null, "the multi-image entry has no image");
  assert.equal(mmmu[1]?.message, mmmu[1]?.text);
  assert.deepEqual(mmmu[0]?.mmmu?.index2ans?.[1], ["B", "Tempera"]);
  for (const b of ["scienceqa", "mmmu", "mmvet", "llavabench"])
    assert.equal(RUN_BENCHMARKS[b as "mmmu"].maxNewTokens, 1024);
  // the templated prompt the model sees
  const p = pipe.questionPrompt(mmmu[0]?.message as string, true);
  assert.match(p, /^A chat between .* USER: <image>\nWhat technique is used in <image 1>\?\n.* ASSISTANT:$/s);
});

test("answer lines are byte-identical to what Factory's json.dumps writes", () => {
  for (const b of ["pope", "scienceqa", "mmmu"]) {
    for (const l of lines(join(EVAL_FIXTURES, b, "answers.jsonl")).slice(0, 3)) {
      assert.equal(answerLine(JSON.parse(l)), `${l}\n`, `${b}: ${l.slice(0, 60)}`);
    }
  }
});

test("answer ids have shortuuid's format (22 characters of its alphabet, most significant digit first)", () => {
  assert.equal(shortuuidEncode(0n), "2222222222222222222222");
  assert.equal(shortuuidEncode(1n), "2222222222222222222223");
  assert.equal(shortuuidEncode(57n), "2222222222222222222232");
  const max = shortuuidEncode(2n ** 128n - 1n);
  assert.equal(max.length, 22);
  assert.match(max, /^[2-9A-HJ-NP-Za-km-z]{22}$/);
});

test("malformed question files: errors name the file, the line and the field", () => {
  const dir = fresh("bad");
  mkdirSync(dir);
  const pope = benchmarkSpec("pope");
  const put = (name: string, content: string) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  const good = '{"question_id": 1, "image": "a.jpg", "text": "Is it?", "category": "random"}';
  assert.throws(
    () => readQuestions(pope, put("q1.jsonl", `${good}\n{"question_id": 2, "image": "a.jpg"}\n`)),
    /q1\.jsonl:2: field "text" is missing; expected a string/,
  );
  assert.throws(
    () => readQuestions(pope, put("q2.jsonl", `${good}\n${good}\n{"question_id": 3,\n`)),
    /q2\.jsonl:3: invalid JSON/,
  );
  assert.throws(
    () => readQuestions(pope, put("q3.jsonl", `{"question_id": 1.5, "image": "a.jpg", "text": "x"}\n`)),
    /q3\.jsonl:1: field "question_id" is 1.5; expected a string or integer id/,
  );
  assert.throws(() => readQuestions(pope, put("q4.jsonl", "")), /q4\.jsonl: no questions/);
  assert.throws(() => readQuestions(pope, join(dir, "none.jsonl")), /none\.jsonl: file not found/);
  const sqa = benchmarkSpec("scienceqa");
  assert.throws(
    () =>
      readQuestions(
        sqa,
        put("s.json", '[{"id": "1", "conversations": [{"from": "human", "value": "q"}]}, {"id": "2"}]'),
      ),
    /s\.json: \[1\]: field "conversations" is missing; expected a JSON array/,
  );
  assert.throws(
    () => readQuestions(sqa, put("s2.json", '[{"id": "1", "image": null, "conversations": [{"value": "q"}]}]')),
    /s2\.json: \[0\]: field "image" is null; expected a string/,
  );
  assert.throws(
    () => readQuestions(sqa, put("s3.json", '[{"id": "1", "conversations": [{"from": "human"}]}]')),
    /s3\.json: \[0\] conversations\[0\]: field "value" is missing/,
  );
  const mmmu = benchmarkSpec("mmmu");
  assert.throws(
    () =>
      readQuestions(
        mmmu,
        put(
          "m.json",
          '[{"id": "validation_Art_1", "question_type": "multiple-choice", "prompt": "p", "all_choices": ["A", "B"], "index2ans": {"A": "x", "B": 2}}]',
        ),
      ),
    /m\.json: \[0\] index2ans: field "B" is 2; expected a string/,
  );
});

test("batch size 3 writes the same answers file as batch size 1 (greedy; images and text-only in one batch)", async () => {
  for (const b of ["scienceqa", "pope"]) {
    const one = fresh(`${b}-b1.jsonl`);
    const three = fresh(`${b}-b3.jsonl`);
    const r1 = await run(b, one, { batchSize: 1 });
    const r3 = await run(b, three, { batchSize: 3 });
    assert.equal(r1.answered, r1.total);
    assert.equal(r3.answered, r3.total);
    assert.equal(readFileSync(three, "utf8"), readFileSync(one, "utf8"), b);
    const answers = lines(one).map((l) => JSON.parse(l));
    assert.deepEqual(
      answers.map((a) => Object.keys(a)),
      answers.map(() => ["question_id", "prompt", "text", "answer_id", "model_id", "metadata"]),
    );
    if (b === "scienceqa") {
      // model_vqa_science: the whole prompt, the model folder's name
      assert.ok(answers.every((a) => a.model_id === "tinyllava-siglip-phi" && a.prompt.startsWith("A chat between")));
      assert.deepEqual(
        answers.map((a) => a.prompt.includes("<image>")),
        [true, true, false, false],
      );
    } else assert.ok(answers.every((a) => a.model_id === null && !a.prompt.includes("USER:")));
    assert.ok(answers.every((a) => a.text === a.text.trim()));
  }
});

test("an interrupted run (abort signal) keeps its complete batches; the rerun resumes to the same file", async () => {
  const ref = fresh("vqav2-ref.jsonl");
  await run("vqav2", ref, { batchSize: 2 });
  const p = fresh("vqav2-int.jsonl");
  const ac = new AbortController();
  const first = await run("vqav2", p, {
    batchSize: 2,
    signal: ac.signal,
    onProgress: (pr) => {
      if (pr.done >= 2) ac.abort();
    },
  });
  assert.equal(first.interrupted, true);
  assert.equal(first.answered, 2);
  assert.equal(lines(p).length, 2);
  const progress: number[] = [];
  const second = await run("vqav2", p, { batchSize: 2, onProgress: (pr) => progress.push(pr.done) });
  assert.deepEqual([second.resumed, second.answered, second.interrupted], [2, 3, false]);
  assert.deepEqual(progress, [2, 4, 5]);
  assert.equal(readFileSync(p, "utf8"), readFileSync(ref, "utf8"));
  assert.ok(!existsSync(`${p}.lock`), "the lock is released");
});

test("a crash mid-line: the incomplete last line is dropped and rewritten; nothing to do → the model is not loaded", async () => {
  const ref = fresh("pope-ref.jsonl");
  await run("pope", ref);
  const p = fresh("pope-crash.jsonl");
  copyFileSync(ref, p);
  copyFileSync(`${ref}.run.json`, `${p}.run.json`);
  const full = readFileSync(p);
  const keep = lines(ref).slice(0, 3).join("\n").length + 1;
  truncateSync(p, keep + 25); // three lines and a piece of the fourth
  const logs: string[] = [];
  const r = await run("pope", p, { log: (m) => logs.push(m) });
  assert.deepEqual([r.resumed, r.answered, r.droppedBytes], [3, 3, 25]);
  assert.ok(logs.some((m) => /dropping an incomplete last line \(25 bytes\)/.test(m)));
  assert.deepEqual(readFileSync(p), full);
  const again = await run("pope", p, {
    loadModel: () => {
      throw new Error("the model must not be loaded when every question is answered");
    },
  });
  assert.deepEqual([again.resumed, again.answered], [6, 0]);
});

test("resuming refuses answers files that are not a prefix of this run's answers", async () => {
  const ref = fresh("pope-ref2.jsonl");
  await run("pope", ref, { limit: 3 });
  const rows = lines(ref);
  const put = (content: string) => {
    const p = fresh("pope-bad.jsonl");
    writeFileSync(p, content);
    return p;
  };
  // a complete line that is not JSON is not a crash artefact
  await assert.rejects(
    run("pope", put(`${rows[0]}\n{"question_id": 2, "te\n${rows[2]}\n`)),
    /pope-bad\.jsonl:2: invalid JSON/,
  );
  // answers of other questions (here: out of order)
  await assert.rejects(
    run("pope", put(`${rows[1]}\n${rows[0]}\n`)),
    /pope-bad\.jsonl:1: question_id 2, but question 1 of the question file is 1 \(.*llava_pope_test\.jsonl:1\)/,
  );
  // more answers than the chunk has questions
  await assert.rejects(run("pope", ref, { limit: 2 }), /has 3 answers but the question file has 2 questions/);
  await assert.rejects(
    run("pope", ref, { numChunks: 2, chunkIdx: 1 }),
    /question_id 1, but question 1 of chunk 1 of 2 is 3002/,
  );
  // other generation settings than the ones the file was started with
  await assert.rejects(
    run("pope", ref, { maxNewTokens: TOKENS + 1 }),
    /was started with max_new_tokens 5; this run has 6/,
  );
  // a prompt built differently (another template)
  const other = fresh("pope-prompt.jsonl");
  writeFileSync(other, rows[0]?.replace("Is there a snowboard", "Is there a ski") ?? "");
  appendNewline(other);
  await assert.rejects(
    run("pope", other),
    /pope-prompt\.jsonl:1: field "prompt" differs from the prompt this run builds/,
  );
  // --limit grows: the same file continues
  const r = await run("pope", ref);
  assert.deepEqual([r.resumed, r.answered], [3, 3]);
});

function appendNewline(p: string): void {
  writeFileSync(p, `${readFileSync(p, "utf8")}\n`);
}

test("one writer per answers file: a live run's lock is refused, a dead run's lock is taken over", async () => {
  const p = fresh("pope-lock.jsonl");
  writeFileSync(`${p}.lock`, `${process.ppid}\n`);
  await assert.rejects(run("pope", p, { limit: 1 }), /another run \(pid \d+\) is writing this answers file/);
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  writeFileSync(`${p}.lock`, `${dead.stdout}\n`);
  const r = await run("pope", p, { limit: 1 });
  assert.equal(r.answered, 1);
  assert.ok(!existsSync(`${p}.lock`));
});

test("missing images: one error naming the question file line, the image and where it was looked for", async () => {
  await assert.rejects(
    run("pope", fresh("pope-noimg.jsonl"), { imagesDir: join(tmp, "nowhere") }),
    /3 image file\(s\) not found in .*nowhere \(--images\); first: .*llava_pope_test\.jsonl:1: "image" "COCO_val2014_000000310196\.jpg" → /,
  );
});

test("MMMU: multi-image entries are not run; multiple-choice answers are option letters; scoring runs", async () => {
  const p = fresh("mmmu.jsonl");
  const r = await run("mmmu", p, { batchSize: 2 });
  assert.equal(r.answered, 4);
  const answers = lines(p).map((l) => JSON.parse(l));
  const qs = readQuestions(benchmarkSpec("mmmu"), join(RUN_FIXTURES, "mmmu", "anns_for_eval.json"));
  answers.forEach((a, i) => {
    const q = qs[i];
    assert.equal(a.question_id, q?.questionId);
    assert.equal(a.model_id, "tinyllava-siglip-phi");
    if (q?.mmmu?.questionType === "multiple-choice") assert.ok(q.mmmu.allChoices?.includes(a.text), a.text);
  });
  // the multi-image question: random.choice(all_choices), drawn reproducibly from the question id
  assert.equal(answers[1].text, mmmuRandomChoice(["A", "B", "C", "D"], "validation_Art_2"));
  assert.equal(answers[1].prompt.includes("<image>"), false);
  // the open question keeps the raw (unstripped) output: the same as generating it directly
  const q = qs[2];
  const direct = await pipe.start(
    [
      {
        prompt: pipe.questionPrompt(q?.message as string, true),
        images: [join(images.mmmu as string, q?.image as string)],
      },
    ],
    {
      maxNewTokens: TOKENS,
      temperature: 0,
    },
  );
  for (const _ of direct.run.steps());
  assert.equal(answers[2].text, direct.run.outputs()[0]?.text);
  direct.release();
  const score = scoreMmmu(join(RUN_FIXTURES, "mmmu"), p);
  assert.equal(score.items.length, 4);
  const b1 = fresh("mmmu-b1.jsonl");
  await run("mmmu", b1, { batchSize: 1 });
  assert.equal(readFileSync(b1, "utf8"), readFileSync(p, "utf8"));
});

test("merge: chunk files in chunk order, with clear errors for missing, incomplete, duplicated or foreign chunks", async () => {
  const dir = fresh("merge");
  const pattern = join(dir, "{chunks}_{idx}.jsonl");
  const files = chunkFiles(pattern, 3);
  assert.deepEqual(
    files,
    [0, 1, 2].map((i) => join(dir, `3_${i}.jsonl`)),
  );
  const spec = benchmarkSpec("pope");
  const qs = readQuestions(spec, join(RUN_FIXTURES, "pope", spec.questionFile));
  const whole = fresh("pope-whole.jsonl");
  await run("pope", whole);
  await assert.rejects(
    async () => mergeAnswers(files, join(dir, "merge.jsonl")),
    /missing chunk file\(s\): .*3_0\.jsonl \(chunk 0 of 3\), .*3_1\.jsonl \(chunk 1 of 3\), .*3_2\.jsonl \(chunk 2 of 3\)/,
  );
  for (const [i, f] of files.entries()) await run("pope", f, { numChunks: 3, chunkIdx: i, batchSize: 2 });
  const out = join(dir, "merge.jsonl");
  const r = mergeAnswers(files, out, { questions: qs });
  assert.deepEqual(r.counts, [2, 2, 2]);
  assert.equal(readFileSync(out, "utf8"), readFileSync(whole, "utf8"), "the merge equals the unsharded run");
  // chunks in the wrong order
  assert.throws(
    () => mergeAnswers([files[1], files[0], files[2]] as string[], fresh("m.jsonl"), { questions: qs }),
    /3_1\.jsonl:1: question_id 3001, but question 1 of chunk 0 is 1/,
  );
  // the same chunk twice
  assert.throws(
    () => mergeAnswers([files[0], files[0], files[2]] as string[], fresh("m.jsonl")),
    /3_0\.jsonl:1: duplicate answer to question_id 1 \(same prompt as .*3_0\.jsonl:1\)/,
  );
  // a chunk that was interrupted: between answers (needs the question file to notice) and mid-line
  const short = fresh("3_1.jsonl");
  writeFileSync(short, `${lines(files[1] as string)[0]}\n`);
  assert.throws(
    () => mergeAnswers([files[0], short, files[2]] as string[], fresh("m.jsonl"), { questions: qs }),
    /3_1\.jsonl: chunk 1 of 3 has 1 of its 2 answers \(first missing: question_id 3002, .*llava_pope_test\.jsonl:4\); rerun that chunk/,
  );
  writeFileSync(short, `${lines(files[1] as string)[0]}\n{"question_id": 30`);
  assert.throws(
    () => mergeAnswers([files[0], short, files[2]] as string[], fresh("m.jsonl")),
    /3_1\.jsonl:2: incomplete last line \(chunk 1 of 3 was interrupted\)/,
  );
  assert.throws(() => mergeAnswers(files, files[0] as string), /is also one of the chunk files/);
  assert.ok(statSync(out).size > 0);
});
