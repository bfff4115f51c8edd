// Engine benchmark: matmul throughput and per-op overhead, beside PyTorch (Debian python3-torch, the same
// libtorch) measured in the same run. Prints JSON lines; the last one has the ratios.
//   npm run bench            (needs /usr/bin/python3 with torch: apt-get install python3-torch)
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as torch from "../src/torch/index.js";

const threads = torch.getNumThreads();

function matmulGflops(dtype: torch.DType, n = 2048, iters = 10): number {
  return torch.tidy(() => {
    const a = torch.randn([n, n]).to(dtype);
    const b = torch.randn([n, n]).to(dtype);
    for (let i = 0; i < 2; i++) a.matmul(b).dispose();
    const t = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) a.matmul(b).dispose();
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    return (2 * n ** 3 * iters) / s / 1e9;
  });
}

function perOpMicros(op: (a: torch.Tensor, b: torch.Tensor) => torch.Tensor, n = 100_000): number {
  const a = torch.ones([4]);
  const b = torch.ones([4]);
  for (let i = 0; i < 10_000; i++) op(a, b).dispose();
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) op(a, b).dispose();
  const us = Number(process.hrtime.bigint() - t) / 1e3 / n;
  a.dispose();
  b.dispose();
  return us;
}

function perOpScopedMicros(n = 100_000): number {
  const a = torch.ones([4]);
  const b = torch.ones([4]);
  const t = process.hrtime.bigint();
  for (let i = 0; i < n / 1000; i++) {
    torch.tidy(() => {
      for (let j = 0; j < 1000; j++) a.add(b);
    });
  }
  const us = Number(process.hrtime.bigint() - t) / 1e3 / n;
  a.dispose();
  b.dispose();
  return us;
}

// This machine's timings drift (shared VM): measure both sides alternately, ROUNDS times, and keep each side's best.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ref = join(dirname(fileURLToPath(import.meta.url)), "engine_ref.py");
type Row = Record<string, number>;
const best = (rows: Row[], key: string, higher: boolean) =>
  rows.map((r) => r[key] as number).reduce((a, b) => (higher ? Math.max(a, b) : Math.min(a, b)));
const oursRows: Row[] = [];
const pyRows: Row[] = [];
let pyError: string | null = null;
for (let round = 0; round < ROUNDS; round++) {
  oursRows.push({
    matmul_f32_gflops: matmulGflops("float32"),
    matmul_bf16_gflops: matmulGflops("bfloat16", 2048, 4),
    tiny_add_us: perOpMicros((a, b) => a.add(b)),
    tiny_add_scoped_us: perOpScopedMicros(),
    tiny_view_us: perOpMicros((a) => a.view(2, 2)),
  });
  if (pyError === null) {
    try {
      pyRows.push(JSON.parse(execFileSync("/usr/bin/python3", [ref, String(threads)], { encoding: "utf8" })));
    } catch (e) {
      pyError = `could not run ${ref}: ${(e as Error).message.split("\n")[0]} (apt-get install python3-torch)`;
    }
  }
}
const summarize = (rows: Row[]) => ({
  matmul_f32_gflops: best(rows, "matmul_f32_gflops", true),
  matmul_bf16_gflops: best(rows, "matmul_bf16_gflops", true),
  tiny_add_us: best(rows, "tiny_add_us", false),
  tiny_view_us: best(rows, "tiny_view_us", false),
});
const ours = { ...summarize(oursRows), tiny_add_scoped_us: best(oursRows, "tiny_add_scoped_us", false) };
console.log(
  JSON.stringify({
    bench: "engine",
    impl: "tinyllava",
    libtorch: torch.libtorchVersion(),
    threads,
    rounds: ROUNDS,
    ...ours,
  }),
);
const py = pyRows.length > 0 ? summarize(pyRows) : null;
if (py)
  console.log(
    JSON.stringify({ bench: "engine", impl: "pytorch", torch: pyRows[0]?.torch, threads, rounds: ROUNDS, ...py }),
  );
else console.log(JSON.stringify({ bench: "engine", impl: "pytorch", error: pyError }));
if (py) {
  const r = (x: number, y: number) => Number((x / y).toFixed(3));
  console.log(
    JSON.stringify({
      bench: "engine",
      summary: "ratios tinyllava / pytorch (matmul: higher is better; per-op: lower is better)",
      matmul_f32: r(ours.matmul_f32_gflops, py.matmul_f32_gflops),
      matmul_bf16: r(ours.matmul_bf16_gflops, py.matmul_bf16_gflops),
      tiny_add: r(ours.tiny_add_us, py.tiny_add_us),
      tiny_add_scoped: r(ours.tiny_add_scoped_us, py.tiny_add_us),
      tiny_view: r(ours.tiny_view_us, py.tiny_view_us),
    }),
  );
}
