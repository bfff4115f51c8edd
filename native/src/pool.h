// A small thread pool for the decode kernels (kernels.cpp). Token-by-token decoding runs ~170 short parallel
// products per token, a few microseconds to a fraction of a millisecond each. libtorch's OpenMP regions wake their
// threads through the kernel on every region when threads wait passively (the engine's default, see native.ts): on
// the 2-core machine that wake-up cost ~0.2 ms per region and halved the bandwidth the products reach (22 vs 50 GB/s
// measured in a stand-alone harness). These workers spin for a short while after each job (TINYLLAVA_SPIN_US,
// default 2000 µs) — long enough to stay awake across one decode step — yielding to any runnable thread of their core
// every few microseconds, and then sleep on a condition variable, so an idle pool costs nothing and never holds a core
// that libtorch's OpenMP or OpenBLAS threads need. Large element-wise work (prefill, vision) does not use this pool.
#pragma once
#include <cstdint>

namespace tl {

/** fn(ctx, part, parts) for part in [0, parts): part 0 runs on the calling thread, the others on the pool's
 * workers; returns when every part is done. `parts` ≤ 1 runs inline. Calls from several threads are serialised. */
void poolRun(int parts, void (*fn)(void* ctx, int part, int parts), void* ctx);

/** Threads a pool run should use: the count last given to setPoolThreads (setNumThreads sets both libtorch's and
 * this), else libtorch's intra-op thread count of the calling thread. */
int poolThreads();
void setPoolThreads(int n);

}  // namespace tl
