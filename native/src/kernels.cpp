// Fused kernels that benchmarks justify (see README "Benchmarks"): the matrix–vector products of token-by-token
// decoding. There each weight is read once per token, so speed is memory bandwidth: libtorch reads bfloat16/float16
// weights through a scalar fallback (or converts them to float32 first, tripling the bytes moved), has no weight-only
// int8 product, and OpenBLAS's sgemv reaches about half the bandwidth on these shapes. One kernel covers them all:
// y[m, n] = (Σ_k x[m, k] · w[n, k]) · scale[n] + bias[n], reading w in its storage type (float32, bfloat16, float16,
// int8 with per-row scales), converting in registers, accumulating in float32 with AVX2 FMA, up to 8 rows of x per
// pass over w. Rows of w are split over libtorch's threads. CPUs without AVX2/FMA/F16C get `null` (the caller then
// uses libtorch's ops).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "common.h"

namespace {

constexpr int64_t kMaxRows = 8;

bool cpuOk() {
  static const bool ok =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return ok;
}

enum class WKind { F32, BF16, F16, I8 };

// 8 weights → 8 floats
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const void* base, int64_t i, WKind kind) {
  switch (kind) {
    case WKind::F32:
      return _mm256_loadu_ps(static_cast<const float*>(base) + i);
    case WKind::BF16: {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case WKind::F16: {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
      return _mm256_cvtph_ps(h);
    }
    case WKind::I8: {
      __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(base) + i));
      return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    }
  }
  return _mm256_setzero_ps();
}

inline float loadScalar(const void* base, int64_t i, WKind kind) {
  switch (kind) {
    case WKind::F32:
      return static_cast<const float*>(base)[i];
    case WKind::BF16: {
      uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case WKind::F16:
      return static_cast<float>(static_cast<const at::Half*>(base)[i]);
    case WKind::I8:
      return static_cast<float>(static_cast<const int8_t*>(base)[i]);
  }
  return 0;
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

/** out[m*N + n] for n in [n0, n1), for M rows of x (float32, [M, K]). */
template <int M>
__attribute__((target("avx2,fma,f16c"))) void gemvRows(const float* x, int64_t K, const void* w, size_t rowBytes,
                                                       WKind kind, int64_t n0, int64_t n1, int64_t N, float* out) {
  const int64_t K8 = K - K % 8;
  for (int64_t n = n0; n < n1; n++) {
    const char* wr = static_cast<const char*>(w) + n * rowBytes;
    __m256 acc[M];
    __m256 acc2[M];
    for (int m = 0; m < M; m++) {
      acc[m] = _mm256_setzero_ps();
      acc2[m] = _mm256_setzero_ps();
    }
    int64_t k = 0;
    for (; k + 16 <= K8; k += 16) {
      const __m256 w0 = load8(wr, k, kind);
      const __m256 w1 = load8(wr, k + 8, kind);
      for (int m = 0; m < M; m++) {
        acc[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * K + k), acc[m]);
        acc2[m] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + m * K + k + 8), acc2[m]);
      }
    }
    for (; k < K8; k += 8) {
      const __m256 w0 = load8(wr, k, kind);
      for (int m = 0; m < M; m++) acc[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * K + k), acc[m]);
    }
    for (int m = 0; m < M; m++) {
      float s = hsum(_mm256_add_ps(acc[m], acc2[m]));
      for (int64_t j = K8; j < K; j++) s += loadScalar(wr, j, kind) * x[m * K + j];
      out[m * N + n] = s;
    }
  }
}

using GemvFn = void (*)(const float*, int64_t, const void*, size_t, WKind, int64_t, int64_t, int64_t, float*);
const GemvFn kGemv[kMaxRows + 1] = {nullptr,         &gemvRows<1>, &gemvRows<2>, &gemvRows<3>, &gemvRows<4>,
                                    &gemvRows<5>, &gemvRows<6>, &gemvRows<7>, &gemvRows<8>};

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
  if (!cpuOk() || !x.device().is_cpu() || !w.device().is_cpu()) return tl::undef(env);
  // no autograd through this kernel: training keeps libtorch's differentiable ops
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad())))
    return tl::undef(env);
  if (w.dim() != 2) throw tl::JsError("linearSmall: weight must be 2-D [out, in]");
  const int64_t N = w.size(0);
  const int64_t K = w.size(1);
  if (x.dim() < 1 || x.size(-1) != K)
    throw tl::JsError("linearSmall: input's last dimension " + std::to_string(x.dim() ? x.size(-1) : 0) +
                      " does not match the weight's " + std::to_string(K));
  const int64_t M = x.numel() / K;
  if (M < 1 || M > kMaxRows) return tl::undef(env);
  const auto xt = x.scalar_type();
  if (xt != at::kFloat && xt != at::kBFloat16 && xt != at::kHalf) return tl::undef(env);
  const WKind kind = kindOf(w);
  if (kind == WKind::I8 && !scale.defined()) throw tl::JsError("linearSmall: int8 weights need per-row scales");
  if (scale.defined() && (scale.scalar_type() != at::kFloat || scale.numel() != N))
    throw tl::JsError("linearSmall: scale must be float32 with one value per output row");
  if (bias.defined() && bias.numel() != N) throw tl::JsError("linearSmall: bias must have one value per output row");
  const at::Tensor wc = w.contiguous();
  const at::Tensor x32 = x.reshape({M, K}).to(at::kFloat).contiguous();
  at::Tensor y = at::empty({M, N}, x32.options());
  const size_t rowBytes = static_cast<size_t>(K) * wc.element_size();
  const float* xp = x32.data_ptr<float>();
  const void* wp = wc.data_ptr();
  float* yp = y.data_ptr<float>();
  const GemvFn fn = kGemv[M];
  // chunks of ≥ 16 KB of weights per task
  const int64_t grain = std::max<int64_t>(1, (16 * 1024) / std::max<size_t>(rowBytes, 1));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) { fn(xp, K, wp, rowBytes, kind, n0, n1, N, yp); });
  if (scale.defined()) y.mul_(scale.view({1, N}));
  if (bias.defined()) y.add_(bias.to(at::kFloat).view({1, N}));
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  RET(y.to(xt).view(shape));
  TL_CATCH
}

/** quantizeInt8(w [N, K] floating) → [q int8 [N, K], scale float32 [N]]: symmetric per-row, scale = max|w| / 127,
 * q = round(w / scale) (ties away from zero is irrelevant: q is clamped to [−127, 127]). */
TL_FN(quantizeInt8) {
  TL_ARGS(1);
  TL_TRY
  const at::Tensor w = T(0).to(at::kFloat).contiguous();
  if (w.dim() != 2) throw tl::JsError("quantizeInt8: weight must be 2-D [out, in]");
  at::Tensor scale = std::get<0>(w.abs().max(1)).div_(127.0).clamp_min_(1e-12);
  at::Tensor q = w.div(scale.unsqueeze(1)).round_().clamp_(-127, 127).to(at::kChar);
  return tl::tensorArray(env, {q, scale});
  TL_CATCH
}

}  // namespace

namespace tl {
void registerKernels(napi_env env, napi_value exports) {
  defineFn(env, exports, "linearSmall", linearSmall);
  defineFn(env, exports, "quantizeInt8", quantizeInt8);
}
}  // namespace tl
