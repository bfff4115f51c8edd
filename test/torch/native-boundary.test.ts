// The native boundary is safe against any JS value: every exported addon function, called with a matrix of bad values
// in every argument position, throws a JS Error with a message (or returns a benign value), and the process survives.
// The fuzzing runs in a child process (native-fuzz-child.ts) so that a crash is reported with the call that caused it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { native } from "../../src/torch/native.js";
import { ROOT } from "../helpers.js";

test("every exported native function survives a matrix of bad arguments", () => {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "test", "torch", "native-fuzz-child.ts")], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
    env: { ...process.env, TINYLLAVA_NUM_THREADS: "1" },
  });
  const lines = r.stdout.split("\n");
  const summaryLine = lines.find((l) => l.startsWith("SUMMARY "));
  const lastCall = lines.filter((l) => l.startsWith("CALL ")).pop();
  assert.ok(
    r.status === 0 && summaryLine,
    `the fuzz child died (status ${r.status}, signal ${r.signal}) at: ${lastCall}\n${r.stderr.slice(-2000)}`,
  );
  const s = JSON.parse(summaryLine.slice("SUMMARY ".length));
  assert.deepEqual(s.exported, s.declared, "every exported function is declared in NativeAddon (and vice versa)");
  assert.ok(s.exported.length >= 100, `${s.exported.length} functions`);
  assert.ok(s.calls > 4000 && s.threw > 0, `${s.calls} calls, ${s.threw} threw`);
  assert.deepEqual(s.nonErrors, [], "throws are JS Errors with a message");
  assert.deepEqual(s.wrongMessages, [], "bad tensor arguments are named as such");
  assert.match(s.inWorker, /belongs to another JS thread/, "a worker recognises the main thread's handles");
  assert.equal(s.isAliveForeign, false, "a worker's handle is not alive here");
  assert.equal(s.liveTensors, 0, "no tensor leaked by the failing calls");
});

test("numbers are validated, not cast: NaN, ±Infinity, fractions, out-of-range values", () => {
  assert.throws(() => native.eye(Number.NaN, null, null), /expected an integer, got NaN/);
  assert.throws(() => native.eye(Number.POSITIVE_INFINITY, null, null), /expected an integer, got Infinity/);
  assert.throws(() => native.zeros([2.5], null, null), /expected an integer, got 2.5/);
  assert.throws(() => native.zeros([1e300], null, null), /expected an integer, got 1.0000000000000001e\+300/);
  assert.throws(() => native.manualSeed(-1), /expected a non-negative integer below 2\^64, got -1/);
  assert.throws(() => native.generatorCreate(Number.NaN), /got NaN/);
  assert.throws(() => native.setNumThreads(2 ** 40), /expected a positive thread count/);
  for (const v of [Number.NaN, -1, -0.5, 1e300, 2 ** 53, "x", {}, undefined, null])
    assert.equal(native.isAlive(v as number), false, String(v));
  assert.equal(native.freeTensor(-1), false, "a disposed tensor's -1: nothing to free");
  assert.throws(() => native.freeTensor(Number.NaN), /expected a tensor handle/);
  assert.throws(() => native.freeMany("x" as never), /expected an array/);
  const h = native.ones([2], 1, null);
  assert.throws(() => native.copyInto(h, {} as never), /copyInto: expected a TypedArray or Buffer/);
  assert.throws(() => native.copyInto(h, [0, 0] as never), /copyInto: expected a TypedArray or Buffer/);
  assert.throws(() => native.copyInto(h, new Float32Array(1)), /destination too small/);
  const dst = new Float32Array(2);
  native.copyInto(h, dst);
  assert.deepEqual([...dst], [1, 1]);
  assert.equal(native.freeTensor(h), true);
  assert.equal(native.freeTensor(h), false, "freeing twice is benign");
  assert.throws(() => native.shape(h), /used after dispose/);
  assert.throws(() => native.adamw([{ params: [] }], undefined as never), /expected an object with "lr"/);
  assert.throws(() => native.adamwSetState(0, 5 as never), /expected an array|used after dispose|optimizer/);
});
