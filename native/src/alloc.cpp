// A small caching CPU allocator registered with libtorch at start-up.
// Why: inside Node, glibc malloc's heap fragments under libtorch's allocation pattern (RSS grew to GBs over long
// training loops and steps ran several times slower from page faults). Blocks are rounded up to size classes
// (4 per power of two, so at most 25% slack) and kept on free lists for reuse; large blocks come from mmap so
// emptyCache() really returns them to the OS.
// How much is cached: a block that misses its class's free list first evicts the least recently freed cached blocks of
// other classes while live + cached + the new block would exceed 1.25 × the highest live total seen so far, so the
// footprint stays within a quarter of the program's own peak (blocks of one size class cannot serve another, so some
// slack is what lets a loop whose phases use different sizes run from the cache) instead of growing by a cache of
// stale sizes; within that, everything freed is kept (up to TINYLLAVA_ALLOC_CACHE_MB, default half the machine's
// memory; TINYLLAVA_ALLOC_SLACK sets the 25%, "off" never evicts; the slack is at least TINYLLAVA_ALLOC_SLACK_MIN_MB,
// default 512). Why: with a fixed 2 GB cap, a real-shape training
// step (Qwen2-0.5B + SigLIP) freed more than 2 GB of activations in its backward pass, so the optimiser's and the next
// step's large temporaries were mmapped and page-faulted afresh every step: 32 s/step instead of 22 s.
#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>
#include <unistd.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <cstdlib>
#include <mutex>
#include <new>
#include <deque>
#include <utility>
#include <vector>

#include "common.h"

namespace {

constexpr size_t kHeader = 64;  // keeps user pointers 64-byte aligned (libtorch's gAlignment)
constexpr size_t kMmapMin = 256 * 1024;
constexpr int kClasses = 4 * 64 + 1;

inline int classOf(size_t n, size_t* rounded) {
  if (n <= 64) {
    *rounded = 64;
    return 0;
  }
  int p = 63 - __builtin_clzll(n - 1);  // 2^p < n <= 2^(p+1)
  size_t base = size_t(1) << p, step = base / 4;
  size_t sub = (n - base + step - 1) / step;  // 1..4
  *rounded = base + sub * step;
  return p * 4 + static_cast<int>(sub);
}

inline size_t classSize(int c) {  // inverse of classOf
  if (c == 0) return 64;
  int p = (c - 1) / 4, sub = c - p * 4;
  size_t base = size_t(1) << p;
  return base + sub * (base / 4);
}

struct CachingCpuAllocator final : public c10::Allocator {
  mutable std::mutex mu;
  // per class: (block, release sequence number); reuse takes the newest (back), eviction the oldest (front)
  mutable std::deque<std::pair<void*, uint64_t>> freeLists[kClasses];
  mutable uint64_t seq = 0;
  mutable int64_t allocated = 0, cached = 0, peak = 0, count = 0;
  int64_t cacheLimit;

  CachingCpuAllocator() {
    const char* e = std::getenv("TINYLLAVA_ALLOC_CACHE_MB");
    if (e) {
      cacheLimit = std::atoll(e) * (int64_t(1) << 20);
    } else {
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
      cacheLimit = pages > 0 && page > 0 ? int64_t(pages) * page / 2 : int64_t(2048) << 20;
    }
    if (const char* f = std::getenv("TINYLLAVA_ALLOC_SLACK_MIN_MB"))
      slackFloor = std::max<int64_t>(0, std::atoll(f)) * (int64_t(1) << 20);
    if (const char* sl = std::getenv("TINYLLAVA_ALLOC_SLACK")) {
      if (std::string(sl) == "off")
        evict = false;
      else
        slackPercent = std::max<int64_t>(0, std::atoll(sl));
    }
  }

  int64_t slackPercent = 25;  // TINYLLAVA_ALLOC_SLACK (percent of the live peak; "off": never evict, as a plain cap)
  bool evict = true;
  // TINYLLAVA_ALLOC_SLACK_MIN_MB: the slack is never less than this (default 512 MB). Why: a small model trained on
  // samples of varying lengths needs blocks of other size classes every step; with 25% of its ~400 MB peak as the
  // only slack, each step evicted and re-mmapped most of the cache (the demo's finetune: 20,000 page faults and
  // ~2× the time per step).
  int64_t slackFloor = int64_t(512) << 20;
  int64_t footprintCap() const { return peak + std::max(peak * slackPercent / 100, slackFloor); }

  // Frees the least recently freed cached blocks of classes other than `keep` until live + cached + need fits the
  // footprint cap (or nothing else is cached). Called with mu held; the blocks are unmapped outside the lock.
  void evictFor(int keep, int64_t need, std::vector<std::pair<void*, size_t>>& out) const {
    while (allocated + cached + need > footprintCap()) {
      int oldest = -1;
      for (int c = 0; c < kClasses; c++)
        if (c != keep && !freeLists[c].empty() &&
            (oldest < 0 || freeLists[c].front().second < freeLists[oldest].front().second))
          oldest = c;
      if (oldest < 0) return;
      const size_t total = classSize(oldest) + kHeader;
      out.emplace_back(freeLists[oldest].front().first, total);
      freeLists[oldest].pop_front();
      cached -= static_cast<int64_t>(total);
    }
  }

  static void* rawAlloc(size_t total) {
    if (total >= kMmapMin) {
      void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      return p == MAP_FAILED ? nullptr : p;
    }
    void* p = nullptr;
    return posix_memalign(&p, 64, total) == 0 ? p : nullptr;
  }
  static void rawFree(void* base, size_t total) {
    if (total >= kMmapMin)
      munmap(base, total);
    else
      std::free(base);
  }

  static void deleter(void* ptr);

  void* alloc(size_t n) const {
    size_t rounded;
    int c = classOf(n, &rounded);
    size_t total = rounded + kHeader;
    void* base = nullptr;
    std::vector<std::pair<void*, size_t>> evicted;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!freeLists[c].empty()) {
        base = freeLists[c].back().first;
        freeLists[c].pop_back();
        cached -= total;
      } else if (evict && cached > 0) {
        evictFor(c, static_cast<int64_t>(total), evicted);
      }
      allocated += total;
      count++;
      if (allocated > peak) peak = allocated;
    }
    for (auto& [b, n] : evicted) rawFree(b, n);
    if (!base) {
      base = rawAlloc(total);
      if (!base) {
        std::lock_guard<std::mutex> lock(mu);
        allocated -= total;
        count--;
        throw c10::Error({__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
                         "tinyllava allocator: out of memory allocating " + std::to_string(n) + " bytes");
      }
      *static_cast<int32_t*>(base) = c;
    }
    return static_cast<char*>(base) + kHeader;
  }

  void release(void* ptr) {
    void* base = static_cast<char*>(ptr) - kHeader;
    int c = *static_cast<int32_t*>(base);
    size_t total = classSize(c) + kHeader;
    bool keep;
    {
      std::lock_guard<std::mutex> lock(mu);
      allocated -= total;
      count--;
      keep = cached + static_cast<int64_t>(total) <= cacheLimit;
      if (keep) {
        freeLists[c].emplace_back(base, ++seq);
        cached += total;
      }
    }
    if (!keep) rawFree(base, total);
  }

  void emptyCache() {
    std::lock_guard<std::mutex> lock(mu);
    for (int c = 0; c < kClasses; c++) {
      for (auto& [b, s] : freeLists[c]) rawFree(b, classSize(c) + kHeader);
      freeLists[c].clear();
    }
    cached = 0;
  }

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override {
#else
  c10::DataPtr allocate(size_t n) const override {
#endif
    if (n == 0) return c10::DataPtr(nullptr, nullptr, &deleter, c10::Device(c10::DeviceType::CPU));
    void* p = alloc(n);
    return c10::DataPtr(p, p, &deleter, c10::Device(c10::DeviceType::CPU));
  }
  c10::DeleterFnPtr raw_deleter() const override { return &deleter; }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
#endif
};

CachingCpuAllocator* instance() {
  static CachingCpuAllocator* a = new CachingCpuAllocator();  // never destroyed: tensors may outlive statics
  return a;
}

void CachingCpuAllocator::deleter(void* ptr) {
  if (ptr) instance()->release(ptr);
}

}  // namespace

namespace tl {
void installAllocator() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* off = std::getenv("TINYLLAVA_ALLOCATOR");
    if (off && std::string(off) == "system") return;
    c10::SetCPUAllocator(instance(), /*priority=*/10);
  });
}
void allocatorStats(int64_t* allocated, int64_t* cached, int64_t* peak, int64_t* blocks) {
  auto* a = instance();
  std::lock_guard<std::mutex> lock(a->mu);
  *allocated = a->allocated;
  *cached = a->cached;
  *peak = a->peak;
  *blocks = a->count;
}
void allocatorEmptyCache() { instance()->emptyCache(); }
}  // namespace tl
