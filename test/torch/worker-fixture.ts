// Handlers for worker.test.ts, run in a worker thread.
import { serveWorker, type Tensor, tidy } from "../../src/torch/index.js";
import { mlpForward } from "./worker-shared.js";

serveWorker({
  forward: (x: Tensor) => tidy(() => mlpForward(x)),
  threads: async () => (await import("../../src/torch/index.js")).getNumThreads(),
  fail: () => {
    throw new TypeError("boom from the worker");
  },
  *count(n: number) {
    for (let i = 0; i < n; i++) yield i;
  },
});
