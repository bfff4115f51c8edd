// Handlers for worker.test.ts, run in a worker thread.
import { keep, serveWorker, type Tensor, tensor, tidy } from "../../src/torch/index.js";
import { native } from "../../src/torch/native.js";
import { busyMatmuls, mlpForward } from "./worker-shared.js";

serveWorker({
  forward: (x: Tensor) => tidy(() => mlpForward(x)),
  // softmax backward in bfloat16 goes to libtorch's own kernel: must still work once a worker has loaded the addon
  bf16SoftmaxGrad: () =>
    tidy(() => {
      const x = tensor([0.5, -1, 2], { dtype: "bfloat16" }).requiresGrad_(true);
      x.softmax(-1).select(0, 1).backward();
      return x.grad!.to("float32").toArray();
    }),
  busy: (ms: number) => busyMatmuls(ms),
  // the raw handle of a tensor that stays alive in this worker (for the native-boundary test)
  liveHandle: () => keep(tensor([1, 2, 3])).handle,
  // what this worker's addon says about a handle from another thread
  useHandle: (h: number) => {
    try {
      return `no error: ${native.shape(h)}`;
    } catch (e) {
      return (e as Error).message;
    }
  },
  threads: async () => (await import("../../src/torch/index.js")).getNumThreads(),
  fail: () => {
    throw new TypeError("boom from the worker");
  },
  *count(n: number) {
    for (let i = 0; i < n; i++) yield i;
  },
});
