# PyTorch side of bench/engine.ts: the same measurements with Debian's python3-torch (the same libtorch).
import json
import sys
import time

import torch

threads = int(sys.argv[1])
torch.set_num_threads(threads)
out = {"torch": torch.__version__, "threads": torch.get_num_threads()}


def matmul(dtype, n=2048, iters=10):
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    dt = time.perf_counter() - t
    return 2 * n**3 * iters / dt / 1e9


out["matmul_f32_gflops"] = matmul(torch.float32)
out["matmul_bf16_gflops"] = matmul(torch.bfloat16, iters=4)

a = torch.ones(4)
b = torch.ones(4)
for _ in range(10000):
    c = a + b
n = 100_000
t = time.perf_counter()
for _ in range(n):
    c = a + b
out["tiny_add_us"] = (time.perf_counter() - t) / n * 1e6
t = time.perf_counter()
for _ in range(n):
    c = a.view(2, 2)
out["tiny_view_us"] = (time.perf_counter() - t) / n * 1e6
print(json.dumps(out))
