// Numerics of PyTorch 2.x's official x86-64 builds, which produce the reference models we check against. Places where
// a libtorch build can round differently from them, each fixed at the source rather than worked around:
//
// 1. Kernel choice. PyTorch >= 2.0 registers an AVX-512 kernel only for ops that opt in (ALSO_REGISTER_AVX512_DISPATCH);
//    sum does not, so on AVX-512 machines it runs its AVX2 kernel, whose 8-lane reduction order rounds float32 sums
//    differently from the 16-lane AVX-512 one. libtorch 1.x registers AVX-512 sum kernels; we clear those
//    registrations before any op runs, so ATen falls back to AVX2 exactly as PyTorch 2.x does. (Matters wherever a
//    float32 reduction sits inside a float64 model: transformers' RMSNorm normalises in float32.) The float32
//    attention-softmax backward is replaced by a kernel with PyTorch 2.x's exact operation order (see below).
// 2. cos/sin. Official wheels link Intel MKL and compute float32/float64 cos and sin with MKL's vector maths library
//    (vmsCos/vmsSin, high-accuracy mode); libtorch without MKL uses SLEEF, which differs in the last bit for some
//    inputs (RoPE tables are float32 cos/sin in transformers). When MKL's libraries are installed we call the same
//    VML functions in the same mode. MKL is loaded at run time (never linked), in its reproducible "compatible" code
//    path so that every CPU gets the same bits; without MKL, libtorch's cos/sin are used and `vmlInfo()` says why.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>
#include <dlfcn.h>

#include <immintrin.h>

#include <cmath>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "common.h"

namespace {

// The registrations are exported variables of libtorch_cpu (DispatchStub<fn, stub>::AVX512); looked up by name so no
// internal header or build macro is needed. Absent (other builds, other CPUs' libraries): nothing to do.
// Each entry: the AVX-512 registration to clear and the AVX2 one ATen then falls back to (cleared only if that exists).
const char* const kAvx512Sums[][2] = {
    {"_ZN2at6native12DispatchStubIPFvRNS_14TensorIteratorEENS0_8sum_stubEE6AVX512E",
     "_ZN2at6native12DispatchStubIPFvRNS_14TensorIteratorEENS0_8sum_stubEE4AVX2E"},
    {"_ZN2at6native12DispatchStubIPFvRNS_14TensorIteratorEENS0_11nansum_stubEE6AVX512E",
     "_ZN2at6native12DispatchStubIPFvRNS_14TensorIteratorEENS0_11nansum_stubEE4AVX2E"},
};
int alignedStubs = 0;
bool softmaxBackwardReplaced = false;

// Softmax backward over the last dim, as PyTorch 2.x's kernel computes it: sum = Σ g·y accumulated in W vector lanes
// (W = the ISA's lanes), lanes combined by the same shuffle tree as ATen's vec_reduce_all (float) or in lane order
// (double), then (g − sum)·y — with every product and sum rounded on its own. PyTorch 2.x builds with
// -ffp-contract=off; libtorch 1.x as Debian builds it lets GCC fuse the multiply-adds into FMAs, which rounds
// differently. Other dtypes go to libtorch's own kernel.
using SoftmaxBwdFn = void (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&);
SoftmaxBwdFn originalSoftmaxBwd[2] = {nullptr, nullptr};  // [AVX2, AVX512]

template <typename T, int W>
T rowDot(const T* g, const T* y, int64_t n) {
  T acc[W];
  if (n < W) {  // vec_reduce_all(fun, vec, n): lanes in order
    T s = g[0] * y[0];
    for (int64_t i = 1; i < n; i++) s = s + g[i] * y[i];
    return s;
  }
  for (int l = 0; l < W; l++) acc[l] = g[l] * y[l];
  int64_t d = W;
  for (; d < n - (n % W); d += W)
    for (int l = 0; l < W; l++) acc[l] = acc[l] + g[d + l] * y[d + l];
  for (int64_t l = 0; l < n - d; l++) acc[l] = acc[l] + g[d + l] * y[d + l];  // Vec::set: the tail's lanes only
  if (std::is_same<T, float>::value) {
    for (int step = W / 2; step >= 1; step /= 2) {  // the 256/128/64/32-bit shuffles: lane i meets lane i ^ step
      T next[W];
      for (int l = 0; l < W; l++) next[l] = acc[l] + acc[l ^ step];
      for (int l = 0; l < W; l++) acc[l] = next[l];
    }
    return acc[0];
  }
  T s = acc[0];
  for (int l = 1; l < W; l++) s = s + acc[l];
  return s;
}

template <int FloatLanes, int Slot>
void softmaxBackwardLastdim(const at::Tensor& gradInput, const at::Tensor& grad, const at::Tensor& output) {
  const auto st = grad.scalar_type();
  if (st != at::kFloat && st != at::kDouble) return originalSoftmaxBwd[Slot](gradInput, grad, output);
  const int64_t n = grad.size(-1);
  if (n == 0 || grad.numel() == 0) return;
  const int64_t rows = grad.numel() / n;
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / (16 * n));
  auto run = [&](auto tag) {
    using T = decltype(tag);
    constexpr int W = std::is_same<T, float>::value ? FloatLanes : FloatLanes / 2;
    const T* g = grad.data_ptr<T>();
    const T* y = output.data_ptr<T>();
    T* o = gradInput.data_ptr<T>();
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; r++) {
        const T* gr = g + r * n;
        const T* yr = y + r * n;
        T* out = o + r * n;
        const T sum = rowDot<T, W>(gr, yr, n);
        for (int64_t i = 0; i < n; i++) out[i] = (gr[i] - sum) * yr[i];
      }
    });
  };
  if (st == at::kFloat) run(float{});
  else run(double{});
}

// The reference fixtures were computed on an AVX-512 machine: ATen's float32 reductions there run in 16 lanes. On a
// CPU without AVX-512, ATen's AVX2 kernels reduce in 8 lanes, which rounds a softmax's row sum differently (float64
// logits then differ from the reference by ~1e-7, through transformers' float32 attention softmax). So on AVX2 the
// softmax kernels are replaced by ones with the AVX-512 kernels' exact operation order: the same per-element exp
// (SLEEF's u10 expf, which gives the same bits at every vector width), a 16-lane sum, the same shuffle tree.
constexpr int kReferenceFloatLanes = 16;

using SleefExp8 = __m256 (*)(__m256);
SleefExp8 sleefExpf8 = nullptr;  // Sleef_expf8_u10avx2, what ATen's AVX2 Vectorized<float>::exp() calls
using SoftmaxFwdFn = void (*)(const at::Tensor&, const at::Tensor&);
SoftmaxFwdFn originalSoftmaxFwdAvx2 = nullptr;
bool softmaxForwardReplaced = false;

__attribute__((target("avx2,fma"))) void expShifted(const float* x, float* out, int64_t n, float shift) {
  int64_t i = 0;
  const __m256 s = _mm256_set1_ps(shift);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, sleefExpf8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
  if (i < n) {  // Vec::loadu(ptr, count): the tail's lanes, zeros elsewhere
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = i; j < n; j++) buf[j - i] = x[j];
    _mm256_store_ps(buf, sleefExpf8(_mm256_sub_ps(_mm256_load_ps(buf), s)));
    for (int64_t j = i; j < n; j++) out[j] = buf[j - i];
  }
}

/** Σ y over a row as ATen's vec::reduce_all with W lanes (same structure as rowDot, without the products). */
template <int W>
float rowSum(const float* y, int64_t n) {
  if (n < W) {
    float s = y[0];
    for (int64_t i = 1; i < n; i++) s = s + y[i];
    return s;
  }
  float acc[W];
  for (int l = 0; l < W; l++) acc[l] = y[l];
  int64_t d = W;
  for (; d < n - (n % W); d += W)
    for (int l = 0; l < W; l++) acc[l] = acc[l] + y[d + l];
  for (int64_t l = 0; l < n - d; l++) acc[l] = acc[l] + y[d + l];
  for (int step = W / 2; step >= 1; step /= 2) {
    float next[W];
    for (int l = 0; l < W; l++) next[l] = acc[l] + acc[l ^ step];
    for (int l = 0; l < W; l++) acc[l] = next[l];
  }
  return acc[0];
}

/** ATen's _vec_softmax_lastdim for float (max, exp(x − max), sum, × 1/sum) in the reference's lane order. */
void softmaxForwardLastdim(const at::Tensor& result, const at::Tensor& self) {
  if (self.scalar_type() != at::kFloat) return originalSoftmaxFwdAvx2(result, self);
  const int64_t n = self.size(-1);
  if (n == 0 || self.numel() == 0) return;
  const int64_t rows = self.numel() / n;
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / (16 * n));
  const float* x = self.data_ptr<float>();
  float* o = result.data_ptr<float>();
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      const float* xr = x + r * n;
      float* out = o + r * n;
      float mx = xr[0];
      for (int64_t i = 1; i < n; i++) mx = (xr[i] > mx || std::isnan(xr[i])) ? xr[i] : mx;  // vec::maximum keeps NaN
      expShifted(xr, out, n, mx);
      const float inv = 1 / rowSum<kReferenceFloatLanes>(out, n);
      for (int64_t i = 0; i < n; i++) out[i] = out[i] * inv;
    }
  });
}

// log_softmax over the last dim (cross entropy's), as ATen's _vec_log_softmax_lastdim in the reference's lanes:
// max, Σ exp(x − max) (the exps reduced as they are computed, map_reduce_all), log of the sum, then (x − max) − log.
// Its backward (Σ g, then g − exp(y)·Σ) in the same lanes.
using SleefLog8 = __m256 (*)(__m256);
SleefLog8 sleefLogf8 = nullptr;
SoftmaxFwdFn originalLogSoftmaxFwdAvx2 = nullptr;
SoftmaxBwdFn originalLogSoftmaxBwdAvx2 = nullptr;
bool logSoftmaxReplaced = false;
// g − exp(y)·Σ as one fused multiply-add: of the two roundings this is the one whose float64 gradients come
// closest to the reference's (5e-8 vs 1.4e-7 of the scale measured on the fixtures; the rest of the gap comes from
// elsewhere in the backward). TINYLLAVA_LOGSOFTMAX_BWD_FMA=0 rounds the product on its own.
const bool logSoftmaxBwdFma = [] {
  const char* v = std::getenv("TINYLLAVA_LOGSOFTMAX_BWD_FMA");
  return !(v && std::string(v) == "0");
}();

__attribute__((target("avx2,fma"))) float logOf(float v) {
  alignas(32) float buf[8] = {v, 1, 1, 1, 1, 1, 1, 1};
  _mm256_store_ps(buf, sleefLogf8(_mm256_load_ps(buf)));
  return buf[0];
}

void logSoftmaxForwardLastdim(const at::Tensor& result, const at::Tensor& self) {
  if (self.scalar_type() != at::kFloat) return originalLogSoftmaxFwdAvx2(result, self);
  const int64_t n = self.size(-1);
  if (n == 0 || self.numel() == 0) return;
  const int64_t rows = self.numel() / n;
  const float* x = self.data_ptr<float>();
  float* o = result.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> e(n);
    for (int64_t r = begin; r < end; r++) {
      const float* xr = x + r * n;
      float* out = o + r * n;
      float mx = xr[0];
      for (int64_t i = 1; i < n; i++) mx = (xr[i] > mx || std::isnan(xr[i])) ? xr[i] : mx;
      expShifted(xr, e.data(), n, mx);
      const float lse = logOf(rowSum<kReferenceFloatLanes>(e.data(), n));
      for (int64_t i = 0; i < n; i++) out[i] = (xr[i] - mx) - lse;
    }
  });
}

__attribute__((target("avx2,fma"))) void logSoftmaxBackwardLastdim(const at::Tensor& gradInput, const at::Tensor& grad,
                                                                   const at::Tensor& output) {
  if (grad.scalar_type() != at::kFloat) return originalLogSoftmaxBwdAvx2(gradInput, grad, output);
  const int64_t n = grad.size(-1);
  if (n == 0 || grad.numel() == 0) return;
  const int64_t rows = grad.numel() / n;
  const float* g = grad.data_ptr<float>();
  const float* y = output.data_ptr<float>();
  float* gi = gradInput.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> ey(n);
    for (int64_t r = begin; r < end; r++) {
      const float* gr = g + r * n;
      const float sum = rowSum<kReferenceFloatLanes>(gr, n);
      expShifted(y + r * n, ey.data(), n, 0.0f);
      float* out = gi + r * n;
      if (logSoftmaxBwdFma)
        for (int64_t i = 0; i < n; i++) out[i] = std::fma(-ey[i], sum, gr[i]);
      else
        for (int64_t i = 0; i < n; i++) out[i] = gr[i] - ey[i] * sum;
    }
  });
}

bool cpuHasAvx2Fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool cpuHasAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
}

const char* const kLogSoftmaxFwdAvx2 =
    "_ZN2at6native12DispatchStubIPFvRKNS_6TensorES4_ENS0_26log_softmax_lastdim_kernelEE4AVX2E";
const char* const kLogSoftmaxBwdAvx2 =
    "_ZN2at6native12DispatchStubIPFvRKNS_6TensorES4_S4_ENS0_35log_softmax_backward_lastdim_kernelEE4AVX2E";
const char* const kSoftmaxFwdAvx2 =
    "_ZN2at6native12DispatchStubIPFvRKNS_6TensorES4_ENS0_22softmax_lastdim_kernelEE4AVX2E";

const char* const kSoftmaxBwd[2] = {
    "_ZN2at6native12DispatchStubIPFvRKNS_6TensorES4_S4_ENS0_31softmax_backward_lastdim_kernelEE4AVX2E",
    "_ZN2at6native12DispatchStubIPFvRKNS_6TensorES4_S4_ENS0_31softmax_backward_lastdim_kernelEE6AVX512E",
};

void alignKernelChoice() {
#if TORCH_VERSION_MAJOR < 2
  Dl_info info;
  if (!dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) || !info.dli_fname) return;
  void* torch = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (!torch) return;
  // (ATen passes contiguous tensors to the lastdim kernel)
  // both slots reduce in the reference machine's 16 lanes (the AVX2 slot runs only on CPUs without AVX-512)
  SoftmaxBwdFn ours[2] = {&softmaxBackwardLastdim<kReferenceFloatLanes, 0>,
                          &softmaxBackwardLastdim<kReferenceFloatLanes, 1>};
  for (int i = 0; i < 2; i++) {
    auto** slot = reinterpret_cast<SoftmaxBwdFn*>(dlsym(torch, kSoftmaxBwd[i]));
    if (slot && *slot) {
      originalSoftmaxBwd[i] = *slot;
      *slot = ours[i];
      softmaxBackwardReplaced = true;
    }
  }
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  const bool atenOnAvx512 = cpuHasAvx512() && !(cap && std::string(cap) != "avx512");
  if (!atenOnAvx512 && cpuHasAvx2Fma()) {
    void* sleef = dlopen("libsleef.so.3", RTLD_LAZY | RTLD_NOLOAD);
    if (!sleef) sleef = dlopen("libsleef.so", RTLD_LAZY | RTLD_NOLOAD);
    // SLEEF linked statically into libtorch (official builds) exports nothing: then libtorch's kernel stays
    void* exp8 = sleef ? dlsym(sleef, "Sleef_expf8_u10avx2") : dlsym(torch, "Sleef_expf8_u10avx2");
    auto** slot = reinterpret_cast<SoftmaxFwdFn*>(dlsym(torch, kSoftmaxFwdAvx2));
    if (exp8 && slot && *slot) {
      sleefExpf8 = reinterpret_cast<SleefExp8>(exp8);
      originalSoftmaxFwdAvx2 = *slot;
      *slot = &softmaxForwardLastdim;
      softmaxForwardReplaced = true;
    }
    void* log8 = sleef ? dlsym(sleef, "Sleef_logf8_u10avx2") : dlsym(torch, "Sleef_logf8_u10avx2");
    auto** lf = reinterpret_cast<SoftmaxFwdFn*>(dlsym(torch, kLogSoftmaxFwdAvx2));
    auto** lb = reinterpret_cast<SoftmaxBwdFn*>(dlsym(torch, kLogSoftmaxBwdAvx2));
    if (exp8 && log8 && lf && *lf && lb && *lb) {
      sleefExpf8 = reinterpret_cast<SleefExp8>(exp8);
      sleefLogf8 = reinterpret_cast<SleefLog8>(log8);
      originalLogSoftmaxFwdAvx2 = *lf;
      originalLogSoftmaxBwdAvx2 = *lb;
      *lf = &logSoftmaxForwardLastdim;
      *lb = &logSoftmaxBackwardLastdim;
      logSoftmaxReplaced = true;
    }
  }
  for (const auto& pair : kAvx512Sums) {
    void** avx512 = reinterpret_cast<void**>(dlsym(torch, pair[0]));
    void** avx2 = reinterpret_cast<void**>(dlsym(torch, pair[1]));
    if (avx512 && avx2 && *avx2) {
      *avx512 = nullptr;
      alignedStubs++;
    }
  }
  dlclose(torch);
#endif
}

using VmlF = void (*)(int n, const float* a, float* r, long long mode);
using VmlD = void (*)(int n, const double* a, double* r, long long mode);
constexpr long long kVmlHA = 0x2;                  // VML_HA
constexpr long long kVmlFtzDazOff = 0x140000;      // VML_FTZDAZ_OFF
constexpr long long kVmlErrModeIgnore = 0x100;     // VML_ERRMODE_IGNORE
constexpr long long kVmlMode = kVmlHA | kVmlFtzDazOff | kVmlErrModeIgnore;  // what ATen's vml.h passes
constexpr int kCbwrCompatible = 3;                 // MKL_CBWR_COMPATIBLE

struct Vml {
  VmlF sCos = nullptr, sSin = nullptr;
  VmlD dCos = nullptr, dSin = nullptr;
  std::string info;
  bool ok() const { return sCos && sSin && dCos && dSin; }
};

std::string dirPrefix() {
  const char* d = std::getenv("TINYLLAVA_MKL_DIR");
  if (!d || !*d) return "";
  std::string s(d);
  if (s.back() != '/') s += '/';
  return s;
}

void* openLibrary(const std::string& name, std::string& err) {
  void* h = dlopen(name.c_str(), RTLD_LAZY | RTLD_GLOBAL);
  if (!h) {
    const char* e = dlerror();
    err += std::string(err.empty() ? "" : "; ") + (e ? e : name + ": not found");
  }
  return h;
}

template <typename F>
F sym(void* h, const char* name) {
  return reinterpret_cast<F>(dlsym(h, name));
}

Vml loadVml() {
  Vml v;
  const char* off = std::getenv("TINYLLAVA_VML");
  if (off && std::string(off) == "0") {
    v.info = "disabled by TINYLLAVA_VML=0";
    return v;
  }
  const std::string dir = dirPrefix();
  std::string err;
  // The single dynamic library (libmkl_rt) or the three layers it would pick: LP64 interface, sequential threading,
  // core (what Debian's libmkl-intel-lp64 / libmkl-sequential / libmkl-core install).
  // (in this order: each layer resolves symbols from the ones before it)
  void* api = nullptr;
  void* core = openLibrary(dir + "libmkl_core.so", err);
  void* seq = core ? openLibrary(dir + "libmkl_sequential.so", err) : nullptr;
  if (seq) api = openLibrary(dir + "libmkl_intel_lp64.so", err);
  std::string how = "libmkl_intel_lp64 + libmkl_sequential + libmkl_core";
  if (!api) {
    setenv("MKL_THREADING_LAYER", "SEQUENTIAL", 0);
    setenv("MKL_INTERFACE_LAYER", "LP64", 0);
    for (const char* rt : {"libmkl_rt.so", "libmkl_rt.so.2", "libmkl_rt.so.1"}) {
      if ((api = openLibrary(dir + rt, err))) {
        how = rt;
        break;
      }
    }
  }
  if (!api) {
    v.info = "MKL not found (" + err + ")";
    return v;
  }
  // MKL_CBWR_Set is the C entry point (the lower-case name is Fortran's, taking a pointer)
  auto cbwr = sym<int (*)(int)>(api, "MKL_CBWR_Set");
  const int cbwrStatus = cbwr ? cbwr(kCbwrCompatible) : -100;
  v.sCos = sym<VmlF>(api, "vmsCos");
  v.sSin = sym<VmlF>(api, "vmsSin");
  v.dCos = sym<VmlD>(api, "vmdCos");
  v.dSin = sym<VmlD>(api, "vmdSin");
  v.info = v.ok() ? "MKL VML (" + how + (cbwrStatus == 0 ? ", compatible code path" : ", CBWR " + std::to_string(cbwrStatus)) + ")" : "MKL found (" + how + ") but without vmsCos/vmsSin/vmdCos/vmdSin";
  return v;
}

const Vml& vml() {
  static std::once_flag once;
  static Vml v;
  std::call_once(once, [] { v = loadVml(); });
  return v;
}

template <typename S, typename F>
void vmlApply(F fn, const at::Tensor& in, at::Tensor& out) {
  const S* a = in.data_ptr<S>();
  S* r = out.data_ptr<S>();
  // chunks as ATen's VML path (ints, not int64), spread over libtorch's threads
  at::parallel_for(0, in.numel(), 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i += (1 << 30)) {
      const int64_t n = std::min<int64_t>(end - i, 1 << 30);
      fn(static_cast<int>(n), a + i, r + i, kVmlMode);
    }
  });
}

/** cos and sin of x as PyTorch's official builds compute them: VML for float32/float64 CPU tensors when MKL is
 * available, libtorch's own kernels otherwise (and always when x needs a gradient, so autograd keeps working). */
TL_FN(cosSin) {
  TL_ARGS(1);
  TL_TRY
  const at::Tensor& x = T(0);
  const auto st = x.scalar_type();
  const bool useVml = x.device().is_cpu() && (st == at::kFloat || st == at::kDouble) && !x.requires_grad() &&
                      x.numel() > 0 && vml().ok();
  if (!useVml) return tl::tensorArray(env, {x.cos(), x.sin()});
  at::Tensor in = x.contiguous();
  at::Tensor c = at::empty_like(in);
  at::Tensor s = at::empty_like(in);
  if (st == at::kFloat) {
    vmlApply<float>(vml().sCos, in, c);
    vmlApply<float>(vml().sSin, in, s);
  } else {
    vmlApply<double>(vml().dCos, in, c);
    vmlApply<double>(vml().dSin, in, s);
  }
  return tl::tensorArray(env, {c, s});
  TL_CATCH
}

/** { available, info }: whether cosSin uses MKL's VML, and which libraries (or why not). */
TL_FN(vmlInfo) {
  TL_ARGS(0);
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "available", tl::boolean(env, vml().ok()));
  napi_set_named_property(env, o, "info", tl::str(env, vml().info));
  return o;
}

/** Which kernel family ATen's reductions use ("avx2 order (as PyTorch 2.x)" or libtorch's default). */
TL_FN(kernelAlignment) {
  TL_ARGS(0);
  std::string s = "libtorch " TORCH_VERSION ": ";
  if (alignedStubs > 0) s += "AVX-512 sum kernels unregistered (AVX2 reduction order, as PyTorch 2.x)";
  if (softmaxBackwardReplaced) s += std::string(alignedStubs > 0 ? "; " : "") + "softmax backward without FMA contraction";
  if (softmaxForwardReplaced)
    s += std::string("; float32 softmax") + (logSoftmaxReplaced ? " and log_softmax" : "") +
         " in AVX-512 lane order on this AVX2 CPU (as the reference machine)";
  if (alignedStubs == 0 && !softmaxBackwardReplaced) s += "its own kernel registrations";
  return tl::str(env, s);
}

}  // namespace

namespace tl {
void registerReference(napi_env env, napi_value exports) {
  // once per process: the addon initialises again in every worker thread, and a second pass would take our own
  // softmax-backward kernel for libtorch's original (bfloat16 would then call itself)
  static std::once_flag aligned;
  std::call_once(aligned, alignKernelChoice);
  defineFn(env, exports, "cosSin", cosSin);
  defineFn(env, exports, "vmlInfo", vmlInfo);
  defineFn(env, exports, "kernelAlignment", kernelAlignment);
}
}  // namespace tl
