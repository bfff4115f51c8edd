// A small caching CPU allocator registered with libtorch at start-up.
// Why: inside Node, glibc malloc's heap fragments under libtorch's allocation pattern (RSS grew to GBs over long
// training loops and steps ran several times slower from page faults). Blocks are rounded up to size classes
// (4 per power of two, so at most 25% slack) and kept on free lists for reuse; large blocks come from mmap so
// emptyCache() really returns them to the OS. The cache is capped (TINYLLAVA_ALLOC_CACHE_MB, default 2048).
#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>
#include <torch/version.h>

#include <atomic>
#include <cstring>
#include <string>
#include <cstdlib>
#include <mutex>
#include <new>
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
  mutable std::vector<void*> freeLists[kClasses];
  mutable int64_t allocated = 0, cached = 0, peak = 0, count = 0;
  int64_t cacheLimit;

  CachingCpuAllocator() {
    const char* e = std::getenv("TINYLLAVA_ALLOC_CACHE_MB");
    cacheLimit = (e ? std::atoll(e) : 2048) * (int64_t(1) << 20);
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
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!freeLists[c].empty()) {
        base = freeLists[c].back();
        freeLists[c].pop_back();
        cached -= total;
      }
      allocated += total;
      count++;
      if (allocated > peak) peak = allocated;
    }
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
        freeLists[c].push_back(base);
        cached += total;
      }
    }
    if (!keep) rawFree(base, total);
  }

  void emptyCache() {
    std::lock_guard<std::mutex> lock(mu);
    for (int c = 0; c < kClasses; c++) {
      for (void* b : freeLists[c]) rawFree(b, classSize(c) + kHeader);
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
