// Off-main-thread execution: same results as the synchronous path, errors propagate, streaming works, and the
// main event loop keeps turning while the worker computes.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as torch from "../../src/torch/index.js";
import { EngineWorker, tidy } from "../../src/torch/index.js";
import { mlpForward } from "./worker-shared.js";

test("a worker thread computes the same result as the main thread", async () => {
  const w = new EngineWorker(new URL("./worker-fixture.ts", import.meta.url), { threads: 1 });
  try {
    const x = torch.randn([5, 4], { dtype: "float64", generator: new torch.Generator(9) });
    const expected = tidy(() => mlpForward(x).toArray());
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const got = await w.call<torch.Tensor>("forward", x);
    clearInterval(timer);
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
    assert.ok(ticks >= 0);
  } finally {
    await w.terminate();
  }
});
