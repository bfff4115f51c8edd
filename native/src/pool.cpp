// See pool.h.
#include "pool.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sched.h>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TL_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define TL_PAUSE() asm volatile("yield")
#else
#define TL_PAUSE() \
  do {             \
  } while (0)
#endif

namespace tl {
namespace {

int64_t spinMicros() {
  static const int64_t us = [] {
    const char* e = std::getenv("TINYLLAVA_SPIN_US");
    if (!e || !*e) return static_cast<int64_t>(2000);
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    return (end && *end == 0 && v >= 0 && v <= 1000000) ? static_cast<int64_t>(v) : static_cast<int64_t>(2000);
  }();
  return us;
}

class Pool {
 public:
  /** Grows the pool to `workers` threads (never shrinks: a run uses the first parts − 1). */
  void ensure(int workers) {
    while (static_cast<int>(started_) < workers) {
      const int id = static_cast<int>(started_) + 1;
      // the epoch it has seen is read here, before the run that started it bumps the epoch
      const uint64_t seen = epoch_.load(std::memory_order_acquire);
      std::thread([this, id, seen] { loop(id, seen); }).detach();  // lives as long as the process
      started_++;
    }
  }

  void run(int parts, void (*fn)(void*, int, int), void* ctx) {
    std::lock_guard<std::mutex> call(callMutex_);
    ensure(parts - 1);
    fn_ = fn;
    ctx_ = ctx;
    parts_ = parts;
    // every worker acknowledges every run (those beyond parts − 1 with nothing to do), so no worker can still be
    // reading this run's fn_/ctx_/parts_ when the next run writes them
    remaining_.store(started_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(sleepMutex_);
      epoch_.fetch_add(1, std::memory_order_release);
      if (sleepers_ > 0) cv_.notify_all();
    }
    fn(ctx, 0, parts);
    while (remaining_.load(std::memory_order_acquire) != 0) TL_PAUSE();
  }

 private:
  void loop(int id, uint64_t seen) {
    for (;;) {
      uint64_t now = epoch_.load(std::memory_order_acquire);
      if (now == seen) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spinMicros());
        for (int i = 0;; i++) {
          now = epoch_.load(std::memory_order_acquire);
          if (now != seen) break;
          TL_PAUSE();
          if ((i & 255) != 255) continue;
          // every few microseconds: let a runnable thread of this core go first (libtorch's OpenMP or OpenBLAS
          // threads, woken by an op between two of ours, would otherwise wait for the scheduler to preempt us)
          sched_yield();
          if (std::chrono::steady_clock::now() >= until) {
            std::unique_lock<std::mutex> lk(sleepMutex_);
            sleepers_++;
            cv_.wait(lk, [&] { return epoch_.load(std::memory_order_acquire) != seen; });
            sleepers_--;
            now = epoch_.load(std::memory_order_acquire);
            break;
          }
        }
      }
      seen = now;
      if (id < parts_) fn_(ctx_, id, parts_);
      remaining_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::mutex callMutex_;
  std::mutex sleepMutex_;
  std::condition_variable cv_;
  int sleepers_ = 0;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> remaining_{0};
  std::atomic<int> started_{0};
  // written by run() before the epoch's release, read by workers after its acquire
  void (*fn_)(void*, int, int) = nullptr;
  void* ctx_ = nullptr;
  int parts_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: its detached workers may outlive static destruction
  return *p;
}

}  // namespace

namespace {
std::atomic<int> gPoolThreads{0};
}
void setPoolThreads(int n) { gPoolThreads.store(n); }
int poolThreads() {
  const int n = gPoolThreads.load();
  return n > 0 ? n : std::max(1, at::get_num_threads());
}

void poolRun(int parts, void (*fn)(void* ctx, int part, int parts), void* ctx) {
  if (parts <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  pool().run(parts, fn, ctx);
}

}  // namespace tl
