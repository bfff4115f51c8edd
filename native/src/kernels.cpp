// Fused kernels that benchmarks justify (see README "Benchmarks"): the matrix–vector products of token-by-token
// decoding. There each weight is read once per token, so speed is memory bandwidth: libtorch reads bfloat16/float16
// weights through a scalar fallback (or converts them to float32 first, tripling the bytes moved), has no weight-only
// int8 product, and OpenBLAS's sgemv reaches about half the bandwidth on these shapes. One kernel covers them all:
// y[m, n] = (Σ_k x[m, k] · w[n, k]) · scale[n] + bias[n], reading w in its storage type (float32, bfloat16, float16,
// int8 with per-row scales), converting in registers, accumulating in float32 with FMA, up to 8 rows of x per pass
// over w. Each thread reads one contiguous block of rows front to back (one sequential stream: on the 2-core Zen 5
// machine a single stream per core reached 50 GB/s where four interleaved rows per pass reached 18), in AVX-512 where
// the CPU has it, else AVX2; the blocks run on the spinning pool of pool.cpp. CPUs without AVX2/FMA/F16C get
// `undefined` (the caller then uses libtorch's ops).
//
// Numerics: each output is the float32 sum of its K products in a fixed order that depends only on K and the
// instruction set — not on M, the thread count or the block split — so a row's result is the same alone or in a
// batch.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"
#include "pool.h"

namespace {

constexpr int64_t kMaxRows = 8;

bool cpuAvx2() {
  static const bool ok =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return ok;
}
bool cpuAvx512() {
  static const bool ok = cpuAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && std::getenv("TINYLLAVA_NO_AVX512") == nullptr;
  return ok;
}

enum class WKind { F32, BF16, F16, I8 };

inline float bf16ToFloat(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <WKind KIND>
inline float loadScalar(const void* base, int64_t i) {
  if constexpr (KIND == WKind::F32) return static_cast<const float*>(base)[i];
  if constexpr (KIND == WKind::BF16) return bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
  if constexpr (KIND == WKind::F16) return static_cast<float>(static_cast<const at::Half*>(base)[i]);
  return static_cast<float>(static_cast<const int8_t*>(base)[i]);
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx512f,avx2,fma"))) inline float hsum512(__m512 v) {
  const __m256 lo = _mm512_castps512_ps256(v);
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  return hsum256(_mm256_add_ps(lo, hi));
}

// ---- AVX-512: 16 weights per vector, two accumulators per x row (even and odd 16-blocks), masked tail ----

template <WKind KIND>
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) inline __m512 load16(const void* base, int64_t i) {
  if constexpr (KIND == WKind::F32) return _mm512_loadu_ps(static_cast<const float*>(base) + i);
  if constexpr (KIND == WKind::BF16)
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i))),
        16));
  if constexpr (KIND == WKind::F16)
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i)));
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(base) + i))));
}

template <WKind KIND>
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) inline __m512 load16Masked(const void* base, int64_t i,
                                                                                        __mmask16 m) {
  if constexpr (KIND == WKind::F32) return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + i);
  if constexpr (KIND == WKind::BF16)
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i)), 16));
  if constexpr (KIND == WKind::F16)
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, static_cast<const int8_t*>(base) + i)));
}

/** out[m][n] = Σ_k x[m][k] · w[n][k] for n in [n0, n1), x as M rows of K floats (row stride K). */
template <int M, WKind KIND>
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) void dot512(const float* x, int64_t K, const char* w,
                                                                         size_t rowBytes, int64_t n0, int64_t n1,
                                                                         float* out, int64_t N) {
  const int64_t K32 = K - K % 32;
  const int64_t K16 = K - K % 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (K - K16)) - 1);
  for (int64_t n = n0; n < n1; n++) {
    const char* wr = w + n * rowBytes;
    __m512 a[M], b[M];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) a[m] = b[m] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k < K32; k += 32) {
      const __m512 w0 = load16<KIND>(wr, k);
      const __m512 w1 = load16<KIND>(wr, k + 16);
      #pragma GCC unroll 8
      for (int m = 0; m < M; m++) {
        a[m] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + m * K + k), a[m]);
        b[m] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + m * K + k + 16), b[m]);
      }
    }
    if (k < K16) {
      const __m512 w0 = load16<KIND>(wr, k);
      #pragma GCC unroll 8
      for (int m = 0; m < M; m++) a[m] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + m * K + k), a[m]);
      k += 16;
    }
    if (tail) {
      const __m512 w0 = load16Masked<KIND>(wr, k, tail);
      #pragma GCC unroll 8
      for (int m = 0; m < M; m++) b[m] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(tail, x + m * K + k), b[m]);
    }
    #pragma GCC unroll 8
    for (int m = 0; m < M; m++) out[m * N + n] = hsum512(_mm512_add_ps(a[m], b[m]));
  }
}

// ---- AVX2: 8 weights per vector, two accumulators per x row, scalar tail ----

template <WKind KIND>
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const void* base, int64_t i) {
  if constexpr (KIND == WKind::F32) return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  if constexpr (KIND == WKind::BF16)
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i))),
        16));
  if constexpr (KIND == WKind::F16)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i)));
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(base) + i))));
}

template <int M, WKind KIND>
__attribute__((target("avx2,fma,f16c"))) void dot256(const float* x, int64_t K, const char* w, size_t rowBytes,
                                                     int64_t n0, int64_t n1, float* out, int64_t N) {
  const int64_t K16 = K - K % 16;
  const int64_t K8 = K - K % 8;
  for (int64_t n = n0; n < n1; n++) {
    const char* wr = w + n * rowBytes;
    __m256 a[M], b[M];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) a[m] = b[m] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k < K16; k += 16) {
      const __m256 w0 = load8<KIND>(wr, k);
      const __m256 w1 = load8<KIND>(wr, k + 8);
      #pragma GCC unroll 8
      for (int m = 0; m < M; m++) {
        a[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * K + k), a[m]);
        b[m] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + m * K + k + 8), b[m]);
      }
    }
    if (k < K8) {
      const __m256 w0 = load8<KIND>(wr, k);
      #pragma GCC unroll 8
      for (int m = 0; m < M; m++) a[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * K + k), a[m]);
    }
    #pragma GCC unroll 8
    for (int m = 0; m < M; m++) {
      float s = hsum256(_mm256_add_ps(a[m], b[m]));
      for (int64_t j = K8; j < K; j++) s += loadScalar<KIND>(wr, j) * x[m * K + j];
      out[m * N + n] = s;
    }
  }
}

using DotFn = void (*)(const float*, int64_t, const char*, size_t, int64_t, int64_t, float*, int64_t);

template <WKind KIND>
DotFn pickDot(int64_t M, bool avx512) {
#define TL_DOT_CASE(m) \
  case m:              \
    return avx512 ? &dot512<m, KIND> : &dot256<m, KIND>;
  switch (M) {
    TL_DOT_CASE(1)
    TL_DOT_CASE(2)
    TL_DOT_CASE(3)
    TL_DOT_CASE(4)
    TL_DOT_CASE(5)
    TL_DOT_CASE(6)
    TL_DOT_CASE(7)
    TL_DOT_CASE(8)
  }
#undef TL_DOT_CASE
  return nullptr;
}

DotFn pickDot(WKind kind, int64_t M, bool avx512) {
  switch (kind) {
    case WKind::F32:
      return pickDot<WKind::F32>(M, avx512);
    case WKind::BF16:
      return pickDot<WKind::BF16>(M, avx512);
    case WKind::F16:
      return pickDot<WKind::F16>(M, avx512);
    case WKind::I8:
      return pickDot<WKind::I8>(M, avx512);
  }
  return nullptr;
}

WKind kindOf(const at::Tensor& w) {
  switch (w.scalar_type()) {
    case at::kFloat:
      return WKind::F32;
    case at::kBFloat16:
      return WKind::BF16;
    case at::kHalf:
      return WKind::F16;
    case at::kChar:
      return WKind::I8;
    default:
      throw tl::JsError(std::string("linearSmall: weights of dtype ") + c10::toString(w.scalar_type()) +
                        " are not supported (float32, bfloat16, float16, int8)");
  }
}

/** Reads element i of a float32/bfloat16/float16 vector as float. */
inline float readFloat(const void* p, at::ScalarType t, int64_t i) {
  switch (t) {
    case at::kBFloat16:
      return bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
    case at::kHalf:
      return static_cast<float>(static_cast<const at::Half*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

struct GemvJob {
  DotFn dot;
  const float* x;
  int64_t M, K, N;
  const char* w;
  size_t rowBytes;
  const float* scale;  // [N] or null
  const void* bias;    // [N] or null
  at::ScalarType biasType;
  float* acc;       // [M, N] float32 sums
  void* y;          // [M, N] output in yType (may alias acc when float32)
  at::ScalarType yType;
};

/** Rows [n0, n1) of the block this part owns, split on 16-row boundaries (whole cache lines of output). */
void gemvPart(void* ctx, int part, int parts) {
  const GemvJob& j = *static_cast<const GemvJob*>(ctx);
  const int64_t blocks = (j.N + 15) / 16;
  const int64_t n0 = std::min(j.N, (blocks * part / parts) * 16);
  const int64_t n1 = std::min(j.N, (blocks * (part + 1) / parts) * 16);
  if (n0 >= n1) return;
  j.dot(j.x, j.K, j.w, j.rowBytes, n0, n1, j.acc, j.N);
  for (int64_t m = 0; m < j.M; m++) {
    for (int64_t n = n0; n < n1; n++) {
      float v = j.acc[m * j.N + n];
      if (j.scale) v *= j.scale[n];
      if (j.bias) v += readFloat(j.bias, j.biasType, n);
      switch (j.yType) {
        case at::kBFloat16:
          static_cast<c10::BFloat16*>(j.y)[m * j.N + n] = c10::BFloat16(v);
          break;
        case at::kHalf:
          static_cast<at::Half*>(j.y)[m * j.N + n] = at::Half(v);
          break;
        default:
          static_cast<float*>(j.y)[m * j.N + n] = v;
      }
    }
  }
}

/** linearSmall(x [..., K], w [N, K], scale [N] float32 | null, bias [N] | null) → y [..., N] in x's dtype, or
 * undefined when this CPU lacks AVX2/FMA/F16C, x has more than 8 rows or is float64, or autograd would need the
 * graph (the caller uses libtorch then). */
TL_FN(linearSmall) {
  TL_ARGS(4);
  TL_TRY
  const at::Tensor& x = T(0);
  const at::Tensor& w = T(1);
  at::Tensor scale = OT(2);
  at::Tensor bias = OT(3);
  if (!cpuAvx2() || !x.device().is_cpu() || !w.device().is_cpu()) return tl::undef(env);
  // no autograd through this kernel: training keeps libtorch's differentiable ops
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad())))
    return tl::undef(env);
  if (w.dim() != 2) throw tl::JsError("linearSmall: weight must be 2-D [out, in]");
  const int64_t N = w.size(0);
  const int64_t K = w.size(1);
  if (x.dim() < 1 || x.size(-1) != K)
    throw tl::JsError("linearSmall: input's last dimension " + std::to_string(x.dim() ? x.size(-1) : 0) +
                      " does not match the weight's " + std::to_string(K));
  const int64_t M = K > 0 ? x.numel() / K : 0;
  if (M < 1 || M > kMaxRows || K < 1) return tl::undef(env);
  const auto xt = x.scalar_type();
  if (xt != at::kFloat && xt != at::kBFloat16 && xt != at::kHalf) return tl::undef(env);
  const WKind kind = kindOf(w);
  if (kind == WKind::I8 && !scale.defined()) throw tl::JsError("linearSmall: int8 weights need per-row scales");
  if (scale.defined() && (scale.scalar_type() != at::kFloat || scale.numel() != N || !scale.is_contiguous()))
    throw tl::JsError("linearSmall: scale must be a contiguous float32 vector with one value per output row");
  if (bias.defined()) {
    const auto bt = bias.scalar_type();
    if (bias.numel() != N) throw tl::JsError("linearSmall: bias must have one value per output row");
    if (bt != at::kFloat && bt != at::kBFloat16 && bt != at::kHalf)
      throw tl::JsError(std::string("linearSmall: bias of dtype ") + c10::toString(bt) + " is not supported");
  }
  const at::Tensor wc = w.contiguous();
  const at::Tensor bc = bias.defined() ? bias.contiguous() : bias;
  // x as float32 rows: float32 input is read in place, bfloat16/float16 converted (exactly) into a buffer
  const at::Tensor xc = x.contiguous();
  std::vector<float> xbuf;
  const float* xp;
  if (xt == at::kFloat) {
    xp = xc.data_ptr<float>();
  } else {
    xbuf.resize(static_cast<size_t>(M * K));
    for (int64_t i = 0; i < M * K; i++) xbuf[i] = readFloat(xc.data_ptr(), xt, i);
    xp = xbuf.data();
  }
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  at::Tensor y = at::empty(shape, x.options().memory_format(at::MemoryFormat::Contiguous));
  std::vector<float> accbuf;
  float* acc;
  if (xt == at::kFloat) {
    acc = y.data_ptr<float>();
  } else {
    accbuf.resize(static_cast<size_t>(M * N));
    acc = accbuf.data();
  }
  GemvJob job{pickDot(kind, M, cpuAvx512()),
              xp,
              M,
              K,
              N,
              static_cast<const char*>(wc.data_ptr()),
              static_cast<size_t>(K) * wc.element_size(),
              scale.defined() ? scale.data_ptr<float>() : nullptr,
              bc.defined() ? bc.data_ptr() : nullptr,
              bc.defined() ? bc.scalar_type() : at::kFloat,
              acc,
              y.data_ptr(),
              xt};
  // about 64 KB of weights per part at least: tiny products are not worth waking a thread for
  const int64_t bytes = N * static_cast<int64_t>(job.rowBytes);
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(tl::poolThreads(), bytes / (64 * 1024))));
  tl::poolRun(parts, &gemvPart, &job);
  RET(y);
  TL_CATCH
}

// ---- several products of one input in one pass ----
// linearSmallGroup(x, [[w, scale | null, bias | null], …], act) runs the products of one input with several weights
// (a layer's q/k/v projections, or an MLP's gate and up projections) as one pool run over all their rows — one wake-up
// and one load-balanced split instead of one per product — and with `act` ≠ 0 (two products of equal width) returns
// act(x·w₀ᵀ) · (x·w₁ᵀ) (a gated MLP's hidden layer) with the eager ops' roundings: each product, the activation and
// the result rounded to x's dtype. act: 1 SiLU (x / (1 + e^−x), as libtorch), 2 GELU tanh, 3 GELU erf.

struct GroupSeg {
  DotFn dot;
  const char* w;
  size_t rowBytes;
  const float* scale;
  const void* bias;
  at::ScalarType biasType;
  int64_t N;
  int64_t start;  // first global row
  float* acc;     // [M, N] float32 sums
};

struct GroupJob {
  const float* x;
  int64_t M, K, total;
  std::vector<GroupSeg> segs;
};

void groupPart(void* ctx, int part, int parts) {
  const GroupJob& j = *static_cast<const GroupJob*>(ctx);
  const int64_t blocks = (j.total + 15) / 16;
  const int64_t g0 = std::min(j.total, (blocks * part / parts) * 16);
  const int64_t g1 = std::min(j.total, (blocks * (part + 1) / parts) * 16);
  for (const GroupSeg& s : j.segs) {
    const int64_t n0 = std::max<int64_t>(g0 - s.start, 0), n1 = std::min<int64_t>(g1 - s.start, s.N);
    if (n0 >= n1) continue;
    s.dot(j.x, j.K, s.w, s.rowBytes, n0, n1, s.acc, s.N);
    for (int64_t m = 0; m < j.M; m++)
      for (int64_t n = n0; n < n1; n++) {
        float& v = s.acc[m * s.N + n];
        if (s.scale) v *= s.scale[n];
        if (s.bias) v += readFloat(s.bias, s.biasType, n);
      }
  }
}

inline float roundTo(at::ScalarType t, float v) {
  if (t == at::kBFloat16) return static_cast<float>(c10::BFloat16(v));
  if (t == at::kHalf) return static_cast<float>(at::Half(v));
  return v;
}

inline float activate(int act, float x) {
  switch (act) {
    case 1:
      return x / (1.0f + std::exp(-x));
    case 2: {
      const float k = 0.7978845608028654f;  // √(2/π)
      return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
    }
    default:
      return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
  }
}

inline void storeAs(at::ScalarType t, void* y, int64_t i, float v) {
  if (t == at::kBFloat16)
    static_cast<c10::BFloat16*>(y)[i] = c10::BFloat16(v);
  else if (t == at::kHalf)
    static_cast<at::Half*>(y)[i] = at::Half(v);
  else
    static_cast<float*>(y)[i] = v;
}

struct GatedEpilogue {
  const float* g;
  const float* u;
  void* y;
  at::ScalarType t;
  int act;
  int64_t n;
};

void gatedPart(void* ctx, int part, int parts) {
  const GatedEpilogue& e = *static_cast<const GatedEpilogue*>(ctx);
  for (int64_t i = e.n * part / parts; i < e.n * (part + 1) / parts; i++) {
    const float a = roundTo(e.t, activate(e.act, roundTo(e.t, e.g[i])));
    storeAs(e.t, e.y, i, a * roundTo(e.t, e.u[i]));
  }
}

TL_FN(linearSmallGroup) {
  TL_ARGS(3);
  TL_TRY
  const at::Tensor& x = T(0);
  const uint32_t nspec = tl::arrayLength(env, argv[1], "linearSmallGroup: specs");
  const int64_t act = I(2);
  if (act < 0 || act > 3) throw tl::JsError("linearSmallGroup: act must be 0 (none), 1 (silu), 2 (gelu tanh) or 3 (gelu)");
  if (nspec < 1) throw tl::JsError("linearSmallGroup: no weights");
  if (act != 0 && nspec != 2) throw tl::JsError("linearSmallGroup: a gated product takes exactly two weights");
  if (!cpuAvx2() || !x.device().is_cpu()) return tl::undef(env);
  const auto xt = x.scalar_type();
  if (xt != at::kFloat && xt != at::kBFloat16 && xt != at::kHalf) return tl::undef(env);
  const int64_t K = x.dim() ? x.size(-1) : 0;
  const int64_t M = K > 0 ? x.numel() / K : 0;
  if (M < 1 || M > kMaxRows) return tl::undef(env);
  std::vector<at::Tensor> ws, scales, biases;
  for (uint32_t i = 0; i < nspec; i++) {
    napi_value spec = tl::element(env, argv[1], i);
    if (tl::arrayLength(env, spec, "linearSmallGroup: spec") != 3)
      throw tl::JsError("linearSmallGroup: each spec is [weight, scale | null, bias | null]");
    const at::Tensor& w = tl::tensorAt(env, tl::element(env, spec, 0));
    at::Tensor sc = tl::optTensor(env, tl::element(env, spec, 1));
    at::Tensor b = tl::optTensor(env, tl::element(env, spec, 2));
    if (!w.device().is_cpu()) return tl::undef(env);
    if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad())))
      return tl::undef(env);
    if (w.dim() != 2 || w.size(1) != K)
      throw tl::JsError("linearSmallGroup: weight " + std::to_string(i) + " must be [out, " + std::to_string(K) + "]");
    const WKind kind = kindOf(w);
    if (kind == WKind::I8 && !sc.defined()) throw tl::JsError("linearSmallGroup: int8 weights need per-row scales");
    if (sc.defined() && (sc.scalar_type() != at::kFloat || sc.numel() != w.size(0) || !sc.is_contiguous()))
      throw tl::JsError("linearSmallGroup: scale must be a contiguous float32 vector with one value per output row");
    if (b.defined() && (b.numel() != w.size(0) || (b.scalar_type() != at::kFloat && b.scalar_type() != at::kBFloat16 &&
                                                   b.scalar_type() != at::kHalf)))
      throw tl::JsError("linearSmallGroup: bias must be float32/bfloat16/float16 with one value per output row");
    ws.push_back(w.contiguous());
    scales.push_back(sc);
    biases.push_back(b.defined() ? b.contiguous() : b);
  }
  if (act != 0 && ws[0].size(0) != ws[1].size(0))
    throw tl::JsError("linearSmallGroup: a gated product needs two weights of the same width");
  const at::Tensor xc = x.contiguous();
  std::vector<float> xbuf;
  const float* xp;
  if (xt == at::kFloat) {
    xp = xc.data_ptr<float>();
  } else {
    xbuf.resize(static_cast<size_t>(M * K));
    for (int64_t i = 0; i < M * K; i++) xbuf[i] = readFloat(xc.data_ptr(), xt, i);
    xp = xbuf.data();
  }
  GroupJob job{xp, M, K, 0, {}};
  std::vector<std::vector<float>> accs(nspec);
  const bool avx512 = cpuAvx512();
  int64_t bytes = 0;
  for (uint32_t i = 0; i < nspec; i++) {
    const at::Tensor& w = ws[i];
    const int64_t N = w.size(0);
    accs[i].resize(static_cast<size_t>(M * N));
    job.segs.push_back(GroupSeg{pickDot(kindOf(w), M, avx512), static_cast<const char*>(w.data_ptr()),
                                static_cast<size_t>(K) * w.element_size(),
                                scales[i].defined() ? scales[i].data_ptr<float>() : nullptr,
                                biases[i].defined() ? biases[i].data_ptr() : nullptr,
                                biases[i].defined() ? biases[i].scalar_type() : at::kFloat, N, job.total,
                                accs[i].data()});
    job.total += N;
    bytes += N * K * w.element_size();
  }
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(tl::poolThreads(), bytes / (64 * 1024))));
  tl::poolRun(parts, &groupPart, &job);
  auto shapeFor = [&](int64_t N) {
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = N;
    return shape;
  };
  if (act == 0) {
    std::vector<at::Tensor> outs;
    for (uint32_t i = 0; i < nspec; i++) {
      const int64_t N = ws[i].size(0);
      at::Tensor y = at::empty(shapeFor(N), x.options().memory_format(at::MemoryFormat::Contiguous));
      for (int64_t e = 0; e < M * N; e++) storeAs(xt, y.data_ptr(), e, accs[i][e]);
      outs.push_back(y);
    }
    return tl::tensorArray(env, outs);
  }
  const int64_t N = ws[0].size(0);
  at::Tensor y = at::empty(shapeFor(N), x.options().memory_format(at::MemoryFormat::Contiguous));
  GatedEpilogue ep{accs[0].data(), accs[1].data(), y.data_ptr(), xt, static_cast<int>(act), M * N};
  tl::poolRun(std::min<int>(parts, static_cast<int>(std::max<int64_t>(1, M * N / 1024))), &gatedPart, &ep);
  return tl::tensorArray(env, {y});
  TL_CATCH
}

// ---- decode attention ----
// softmax(q·kᵀ · scale + mask) · v for a few new queries against the KV cache, one task per (batch row, key/value
// head): the G query heads that share a key/value head (grouped-query attention) and their L positions read each
// cached key and value once. Scores, the float32 softmax and the weighted sum stay in float32 (eager attention rounds
// the scores and probabilities to the model dtype in between: for bfloat16/float16 this is the more accurate of the
// two). In eager libtorch these were two batched matmuls per layer, each a parallel region that woke the BLAS threads:
// 0.2–0.7 ms each, a third of a decode step at real shapes.

struct AttnJob {
  int64_t B, H, KV, L, D, S;
  int64_t past;  // positions before this call's L queries (causal: query l sees keys ≤ past + l)
  float scale;
  const float* q;  // [B, H, L, D] float32 contiguous
  const char* k;   // key cache rows, element strides below (last dim contiguous)
  const char* v;
  int64_t ks0, ks1, ks2, vs0, vs1, vs2;
  WKind kind;      // cache dtype
  size_t esize;
  const char* mask;  // additive [B, 1, L, S] by strides (broadcast strides may be 0), or null
  int64_t ms0, ms2, ms3;
  at::ScalarType maskType;
  float* out;  // [B, L, H, D] float32
};

/** Eight dot products at once: lane i of the result is the sum of acc[i]'s lanes. */
__attribute__((target("avx2,fma"))) inline __m256 hsum8x8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]);
  const __m256 t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]);
  const __m256 t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);
  const __m256 u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/** exp(x) for x ≤ 0 (softmax after subtracting the maximum): Cephes' range reduction and degree-6 polynomial, within
 * 2 ulp of expf; 0 below −87.3 (where expf is subnormal), so masked keys weigh exactly 0 as in eager softmax. */
__attribute__((target("avx2,fma"))) inline __m256 expNonPositive(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/** Rows [s0, s0 + n) of a cache (row stride `stride` elements) as float32 into tile [n][D]. */
template <WKind KIND>
__attribute__((target("avx2,fma,f16c"))) void toTile(const char* base, int64_t stride, size_t esize, int64_t s0,
                                                     int64_t n, int64_t D, float* tile) {
  for (int64_t i = 0; i < n; i++) {
    const char* row = base + (s0 + i) * stride * static_cast<int64_t>(esize);
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) _mm256_storeu_ps(tile + i * D + d, load8<KIND>(row, d));
    for (; d < D; d++) tile[i * D + d] = loadScalar<KIND>(row, d);
  }
}

__attribute__((target("avx2,fma"))) inline float dotF32(const float* a, const float* b, int64_t D) {
  __m256 acc = _mm256_setzero_ps();
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), acc);
  float s = hsum256(acc);
  for (; d < D; d++) s += a[d] * b[d];
  return s;
}

template <WKind KIND>
__attribute__((target("avx2,fma,f16c"))) void attnTask(const AttnJob& j, int64_t b, int64_t kvh,
                                                       std::vector<float>& buf) {
  const int64_t G = j.H / j.KV;
  const int64_t R = G * j.L;  // query rows of this task: r = g · L + l
  const int64_t S = j.S, D = j.D;
  constexpr int64_t kBlock = 8;
  buf.resize(static_cast<size_t>(R * S + kBlock * D + R * D));
  float* sc = buf.data();            // [R, S] scores, then probabilities
  float* tile = sc + R * S;          // [8, D] keys or values of one block, float32
  float* acc = tile + kBlock * D;    // [R, D] weighted sums
  const char* kb = j.k + (b * j.ks0 + kvh * j.ks1) * static_cast<int64_t>(j.esize);
  const char* vb = j.v + (b * j.vs0 + kvh * j.vs1) * static_cast<int64_t>(j.esize);
  const float* q = j.q + (b * j.H + kvh * G) * j.L * D;  // the task's R query rows are consecutive: [G, L, D]
  const __m256 scale = _mm256_set1_ps(j.scale);
  // scores: each block of 8 keys converted once, then dotted with every query row
  for (int64_t s0 = 0; s0 < S; s0 += kBlock) {
    const int64_t n = std::min(kBlock, S - s0);
    toTile<KIND>(kb, j.ks2, j.esize, s0, n, D, tile);
    for (int64_t r = 0; r < R; r++) {
      const float* qr = q + r * D;
      if (n == kBlock) {
        __m256 a[kBlock];
        #pragma GCC unroll 8
        for (int i = 0; i < kBlock; i++) a[i] = _mm256_setzero_ps();
        int64_t d = 0;
        for (; d + 8 <= D; d += 8) {
          const __m256 qv = _mm256_loadu_ps(qr + d);
          #pragma GCC unroll 8
          for (int i = 0; i < kBlock; i++) a[i] = _mm256_fmadd_ps(_mm256_loadu_ps(tile + i * D + d), qv, a[i]);
        }
        __m256 out = hsum8x8(a);
        if (d < D) {
          alignas(32) float rest[kBlock];
          #pragma GCC unroll 8
          for (int i = 0; i < kBlock; i++) {
            float t = 0;
            for (int64_t e = d; e < D; e++) t += tile[i * D + e] * qr[e];
            rest[i] = t;
          }
          out = _mm256_add_ps(out, _mm256_load_ps(rest));
        }
        _mm256_storeu_ps(sc + r * S + s0, _mm256_mul_ps(out, scale));
      } else {
        for (int64_t i = 0; i < n; i++) sc[r * S + s0 + i] = dotF32(tile + i * D, qr, D) * j.scale;
      }
    }
  }
  // mask, causal limit and float32 softmax per row
  const size_t msize = j.mask ? c10::elementSize(j.maskType) : 0;
  for (int64_t r = 0; r < R; r++) {
    const int64_t l = r % j.L;
    float* sr = sc + r * S;
    const int64_t visible = std::min(S, j.past + l + 1);
    if (j.mask) {
      const char* mr = j.mask + (b * j.ms0 + l * j.ms2) * static_cast<int64_t>(msize);
      if (j.maskType == at::kFloat && j.ms3 == 1) {
        const float* mf = reinterpret_cast<const float*>(mr);
        for (int64_t s = 0; s < visible; s++) sr[s] += mf[s];
      } else {
        for (int64_t s = 0; s < visible; s++) sr[s] += readFloat(mr + s * j.ms3 * static_cast<int64_t>(msize), j.maskType, 0);
      }
    }
    __m256 mx8 = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    int64_t s = 0;
    for (; s + 8 <= visible; s += 8) mx8 = _mm256_max_ps(mx8, _mm256_loadu_ps(sr + s));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, mx8);
    float mx = lanes[0];
    for (int i = 1; i < 8; i++) mx = std::max(mx, lanes[i]);
    for (; s < visible; s++) mx = std::max(mx, sr[s]);
    const __m256 m8 = _mm256_set1_ps(mx);
    __m256 sum8 = _mm256_setzero_ps();
    for (s = 0; s + 8 <= visible; s += 8) {
      const __m256 e = expNonPositive(_mm256_sub_ps(_mm256_loadu_ps(sr + s), m8));
      _mm256_storeu_ps(sr + s, e);
      sum8 = _mm256_add_ps(sum8, e);
    }
    float sum = hsum256(sum8);
    if (s < visible) {
      alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = s; i < visible; i++) t[i - s] = sr[i] - mx;
      alignas(32) float e[8];
      _mm256_store_ps(e, expNonPositive(_mm256_load_ps(t)));
      for (int64_t i = s; i < visible; i++) {
        sr[i] = e[i - s];
        sum += e[i - s];
      }
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (s = 0; s + 8 <= visible; s += 8) _mm256_storeu_ps(sr + s, _mm256_mul_ps(_mm256_loadu_ps(sr + s), inv));
    for (; s < visible; s++) sr[s] *= 1.0f / sum;
    for (s = visible; s < S; s++) sr[s] = 0;
  }
  // weighted values: each block of 8 values converted once, then added into every query row's sum
  std::fill_n(acc, R * D, 0.0f);
  for (int64_t s0 = 0; s0 < S; s0 += kBlock) {
    const int64_t n = std::min(kBlock, S - s0);
    toTile<KIND>(vb, j.vs2, j.esize, s0, n, D, tile);
    for (int64_t r = 0; r < R; r++) {
      const float* pr = sc + r * S + s0;
      float* ar = acc + r * D;
      int64_t d = 0;
      // four independent accumulators (a single chain of n FMAs would wait on each one's latency)
      for (; d + 32 <= D; d += 32) {
        __m256 a0 = _mm256_loadu_ps(ar + d), a1 = _mm256_loadu_ps(ar + d + 8);
        __m256 a2 = _mm256_loadu_ps(ar + d + 16), a3 = _mm256_loadu_ps(ar + d + 24);
        for (int64_t i = 0; i < n; i++) {
          const __m256 p = _mm256_set1_ps(pr[i]);
          const float* t = tile + i * D + d;
          a0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(t), a0);
          a1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(t + 8), a1);
          a2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(t + 16), a2);
          a3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(t + 24), a3);
        }
        _mm256_storeu_ps(ar + d, a0);
        _mm256_storeu_ps(ar + d + 8, a1);
        _mm256_storeu_ps(ar + d + 16, a2);
        _mm256_storeu_ps(ar + d + 24, a3);
      }
      for (; d + 8 <= D; d += 8) {
        __m256 a = _mm256_loadu_ps(ar + d);
        for (int64_t i = 0; i < n; i++) a = _mm256_fmadd_ps(_mm256_set1_ps(pr[i]), _mm256_loadu_ps(tile + i * D + d), a);
        _mm256_storeu_ps(ar + d, a);
      }
      for (; d < D; d++) {
        float a = ar[d];
        for (int64_t i = 0; i < n; i++) a += pr[i] * tile[i * D + d];
        ar[d] = a;
      }
    }
  }
  // out[b, l, h, :] for h = kvh · G + g
  for (int64_t r = 0; r < R; r++) {
    const int64_t g = r / j.L, l = r % j.L;
    std::copy_n(acc + r * D, D, j.out + ((b * j.L + l) * j.H + kvh * G + g) * D);
  }
}

void attnPart(void* ctx, int part, int parts) {
  const AttnJob& j = *static_cast<const AttnJob*>(ctx);
  thread_local std::vector<float> scores;
  const int64_t tasks = j.B * j.KV;
  for (int64_t t = tasks * part / parts; t < tasks * (part + 1) / parts; t++) {
    const int64_t b = t / j.KV, kvh = t % j.KV;
    switch (j.kind) {
      case WKind::F32:
        attnTask<WKind::F32>(j, b, kvh, scores);
        break;
      case WKind::BF16:
        attnTask<WKind::BF16>(j, b, kvh, scores);
        break;
      case WKind::F16:
        attnTask<WKind::F16>(j, b, kvh, scores);
        break;
      default:
        break;
    }
  }
}

/** attendDecode(q [B, H, L, D], k [B, KV, S, D], v [B, KV, S, D], mask additive [B, 1, L, S] | null, scale, past)
 * → [B, H, L, D] in q's dtype (a view of a [B, L, H, D] tensor: transposing it back is free), or undefined where
 * libtorch's ops should run instead (no AVX2, float64, autograd, L > 8, or layouts this kernel does not read). */
TL_FN(attendDecode) {
  TL_ARGS(6);
  TL_TRY
  const at::Tensor& q = T(0);
  const at::Tensor& k = T(1);
  const at::Tensor& v = T(2);
  const at::Tensor mask = OT(3);
  const double scale = D(4);
  const int64_t past = I(5);
  if (!cpuAvx2() || !q.device().is_cpu() || !k.device().is_cpu() || !v.device().is_cpu()) return tl::undef(env);
  if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) return tl::undef(env);
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return tl::undef(env);
  const auto dt = q.scalar_type();
  if (dt != at::kFloat && dt != at::kBFloat16 && dt != at::kHalf) return tl::undef(env);
  if (k.scalar_type() != dt || v.scalar_type() != dt) return tl::undef(env);
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), Dh = q.size(3);
  const int64_t KV = k.size(1), S = k.size(2);
  if (L < 1 || L > kMaxRows || k.size(0) != B || v.size(0) != B || v.size(1) != KV || v.size(2) != S ||
      k.size(3) != Dh || v.size(3) != Dh || KV < 1 || H % KV != 0 || S < 1 || past < 0 || past + L > S)
    return tl::undef(env);
  if (k.stride(3) != 1 || v.stride(3) != 1) return tl::undef(env);
  if (mask.defined()) {
    const auto mt = mask.scalar_type();
    if (mask.dim() != 4 || mask.size(0) != B || mask.size(2) != L || mask.size(3) != S || mask.size(1) != 1 ||
        (mt != at::kFloat && mt != at::kBFloat16 && mt != at::kHalf))
      return tl::undef(env);
  }
  const at::Tensor q32 = q.to(at::kFloat).contiguous();
  at::Tensor out32 = at::empty({B, L, H, Dh}, q.options().dtype(at::kFloat));
  AttnJob job{B,
              H,
              KV,
              L,
              Dh,
              S,
              past,
              static_cast<float>(scale),
              q32.data_ptr<float>(),
              static_cast<const char*>(k.data_ptr()),
              static_cast<const char*>(v.data_ptr()),
              k.stride(0),
              k.stride(1),
              k.stride(2),
              v.stride(0),
              v.stride(1),
              v.stride(2),
              kindOf(k),
              static_cast<size_t>(k.element_size()),
              mask.defined() ? static_cast<const char*>(mask.data_ptr()) : nullptr,
              mask.defined() ? mask.stride(0) : 0,
              mask.defined() ? mask.stride(2) : 0,
              mask.defined() ? mask.stride(3) : 0,
              mask.defined() ? mask.scalar_type() : at::kFloat,
              out32.data_ptr<float>()};
  const int parts = static_cast<int>(std::min<int64_t>(tl::poolThreads(), B * KV));
  tl::poolRun(parts, &attnPart, &job);
  const at::Tensor out = dt == at::kFloat ? out32 : out32.to(dt);
  RET(out.transpose(1, 2));
  TL_CATCH
}

/** quantizeInt8(w [N, K] floating) → [q int8 [N, K], scale float32 [N]]: symmetric per-row, scale = max|w| / 127,
 * q = round(w / scale) (ties away from zero is irrelevant: q is clamped to [−127, 127]). Rows are done in blocks of
 * ~16 MB of float32, so quantising a 151,936 × 896 embedding needs 16 MB of temporaries, not three float32 copies of
 * it (1.6 GB: that was the peak memory of loading Qwen2-0.5B with --quantize int8). */
TL_FN(quantizeInt8) {
  TL_ARGS(1);
  TL_TRY
  const at::Tensor& w = T(0);
  if (w.dim() != 2) throw tl::JsError("quantizeInt8: weight must be 2-D [out, in]");
  if (!at::isFloatingType(w.scalar_type())) throw tl::JsError("quantizeInt8: weight must be floating point");
  const int64_t N = w.size(0), K = w.size(1);
  at::Tensor q = at::empty({N, K}, w.options().dtype(at::kChar));
  at::Tensor scale = at::empty({N}, w.options().dtype(at::kFloat));
  const int64_t block = std::max<int64_t>(1, (int64_t(16) << 20) / std::max<int64_t>(1, K * 4));
  for (int64_t n0 = 0; n0 < N; n0 += block) {
    const int64_t n = std::min(block, N - n0);
    const at::Tensor wb = w.narrow(0, n0, n).to(at::kFloat).contiguous();
    at::Tensor sb = std::get<0>(wb.abs().max(1)).div_(127.0).clamp_min_(1e-12);
    q.narrow(0, n0, n).copy_(wb.div(sb.unsqueeze(1)).round_().clamp_(-127, 127).to(at::kChar));
    scale.narrow(0, n0, n).copy_(sb);
  }
  return tl::tensorArray(env, {q, scale});
  TL_CATCH
}

}  // namespace

namespace tl {
void registerKernels(napi_env env, napi_value exports) {
  defineFn(env, exports, "linearSmall", linearSmall);
  defineFn(env, exports, "quantizeInt8", quantizeInt8);
  defineFn(env, exports, "attendDecode", attendDecode);
  defineFn(env, exports, "linearSmallGroup", linearSmallGroup);
}
}  // namespace tl
