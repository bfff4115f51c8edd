// Off-main-thread execution: same results as the synchronous path, errors propagate, streaming works, and the
// main event loop keeps turning while the worker computes.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as torch from "../../src/torch/index.js";
import { EngineWorker, tidy } from "../../src/torch/index.js";
import { busyMatmuls, mlpForward } from "./worker-shared.js";

test("a worker thread computes the same result as the main thread", async () => {
  const w = new EngineWorker(new URL("./worker-fixture.ts", import.meta.url), { threads: 1 });
  try {
    const x = torch.randn([5, 4], { dtype: "float64", generator: new torch.Generator(9) });
    const expected = tidy(() => mlpForward(x).toArray());
    const got = await w.call<torch.Tensor>("forward", x);
    assert.deepEqual(got.shape, [5, 3]);
    assert.deepEqual(got.toArray(), expected, "bit-identical to the synchronous path");
    assert.equal(await w.call("threads"), 1, "thread count is set inside the worker");
    const bf16Grad = () =>
      tidy(() => {
        const v = torch.tensor([0.5, -1, 2], { dtype: "bfloat16" }).requiresGrad_(true);
        v.softmax(-1).select(0, 1).backward();
        return v.grad!.to("float32").toArray();
      });
    const inWorker = await w.call<number[]>("bf16SoftmaxGrad");
    assert.deepEqual(inWorker, bf16Grad(), "kernel registrations survive the addon initialising in a worker");
    await assert.rejects(w.call("fail"), /boom from the worker/);
    await assert.rejects(w.call("nope"), /no handler "nope"/);
    const seen: number[] = [];
    for await (const v of w.stream<number>("count", 4)) seen.push(v);
    assert.deepEqual(seen, [0, 1, 2, 3]);
  } finally {
    await w.terminate();
  }
});

/** Runs `work` while a 5 ms interval timer ticks; the ticks seen and the longest gap between two of them (or between
 * the start and the first, the last and the end) — how long the main event loop was blocked at most. */
async function loopWhile<T>(work: () => Promise<T>): Promise<{ result: T; ticks: number; maxGapMs: number }> {
  let ticks = 0;
  let last = performance.now();
  let maxGapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
  }, 5);
  try {
    const result = await work();
    maxGapMs = Math.max(maxGapMs, performance.now() - last);
    return { result, ticks, maxGapMs };
  } finally {
    clearInterval(timer);
  }
}

test("the main event loop keeps turning while a worker computes for 400 ms", async () => {
  const w = new EngineWorker(new URL("./worker-fixture.ts", import.meta.url), { threads: 1 });
  try {
    await w.call("threads"); // the worker is up (its start-up is not what is measured)
    // the measurement itself: the same work on the main thread blocks the loop for its whole duration
    const blocked = await loopWhile(async () => busyMatmuls(400));
    assert.ok(blocked.ticks <= 1, `main-thread work: ${blocked.ticks} ticks`);
    assert.ok(blocked.maxGapMs >= 390, `main-thread work blocked the loop for only ${blocked.maxGapMs} ms`);
    const off = await loopWhile(() => w.call<{ iterations: number; elapsedMs: number }>("busy", 400));
    assert.ok(off.result.elapsedMs >= 400 && off.result.iterations > 10, JSON.stringify(off.result));
    // a 5 ms timer over ≥ 400 ms: about 80 ticks on an idle machine; a loaded 2-core CI still gives dozens
    assert.ok(off.ticks >= 20, `only ${off.ticks} timer ticks during 400 ms of worker computation`);
    assert.ok(off.maxGapMs < 150, `the main thread was blocked for ${off.maxGapMs.toFixed(1)} ms`);
  } finally {
    await w.terminate();
  }
});
