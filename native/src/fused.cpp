// Fused element-wise kernels for inference (no autograd) in float32/bfloat16/float16: RMSNorm, LayerNorm and rotary
// embeddings.
// Eager, each is 7–14 libtorch ops with their own temporaries; a decode step at real shapes runs ~150 of them, and
// those small ops cost more than the attention they surround (README "Benchmarks"). Both reproduce the eager ops'
// roundings — every intermediate the eager code rounds to the model dtype is rounded here too — so results equal
// eager's except for the order of RMSNorm's sum of squares. Rows are split over libtorch's threads when there are
// enough of them (prefill, vision). float64, autograd and other layouts return undefined: the caller runs libtorch.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include <ATen/Parallel.h>

namespace {

/** Largest input (elements) RMSNorm and RoPE fuse: a few decode rows. */
constexpr int64_t kSmall = 64 * 1024;

bool lowpOrF32(at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf; }

inline float rd(const void* p, at::ScalarType t, int64_t i) {
  switch (t) {
    case at::kBFloat16:
      return static_cast<float>(static_cast<const c10::BFloat16*>(p)[i]);
    case at::kHalf:
      return static_cast<float>(static_cast<const at::Half*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}
inline void wr(void* p, at::ScalarType t, int64_t i, float v) {
  switch (t) {
    case at::kBFloat16:
      static_cast<c10::BFloat16*>(p)[i] = c10::BFloat16(v);
      break;
    case at::kHalf:
      static_cast<at::Half*>(p)[i] = at::Half(v);
      break;
    default:
      static_cast<float*>(p)[i] = v;
  }
}
/** v rounded to dtype t and back (the rounding an eager op in dtype t applies to its result). */
inline float round(at::ScalarType t, float v) {
  switch (t) {
    case at::kBFloat16:
      return static_cast<float>(c10::BFloat16(v));
    case at::kHalf:
      return static_cast<float>(at::Half(v));
    default:
      return v;
  }
}

bool needsGrad(std::initializer_list<const at::Tensor*> ts) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

/** Runs fn over `rows` rows of `width` elements: inline when small (a decode step's few rows), else split over
 * libtorch's intra-op threads — not the spinning decode pool (pool.cpp): these large calls sit between libtorch's own
 * parallel GEMMs (prefill, vision), and a pool worker still spinning after its job would take a core from them. */
void runRows(int64_t rows, int64_t width, void (*fn)(void*, int, int), void* ctx) {
  if (rows * width < 64 * 1024 || rows < 2) {
    fn(ctx, 0, 1);
    return;
  }
  // part p of `parts` takes rows [rows·p/parts, rows·(p+1)/parts): use blocks of rows as the parts
  const int64_t parts = std::min<int64_t>(rows, 256);
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) fn(ctx, static_cast<int>(p), static_cast<int>(parts));
  });
}

// ---- RMSNorm ----
// transformers: h = x.float(); h = h * rsqrt(mean(h²) + eps); out = weight * h.to(dtype)  (Gemma: (h * (1 + w.float())).to(dtype))

struct RmsJob {
  const void* x;
  void* y;
  const void* w;
  at::ScalarType xt, wt, yt;  // yt: the result dtype (x's, or promoted with the weight's)
  int64_t rows, D;
  float eps;
  bool unitOffset;
};

void rmsPart(void* ctx, int part, int parts) {
  const RmsJob& j = *static_cast<const RmsJob*>(ctx);
  const int64_t r0 = j.rows * part / parts, r1 = j.rows * (part + 1) / parts;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t o = r * j.D;
    float ss = 0;
    for (int64_t d = 0; d < j.D; d++) {
      const float v = rd(j.x, j.xt, o + d);
      ss += v * v;
    }
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(j.D) + j.eps);
    for (int64_t d = 0; d < j.D; d++) {
      const float h = rd(j.x, j.xt, o + d) * inv;
      float out;
      if (j.unitOffset) {
        out = j.w ? h * (rd(j.w, j.wt, d) + 1.0f) : h;
      } else {
        // weight (its dtype) × normed (rounded to x's dtype): eager promotes both to the result dtype first
        const float back = round(j.xt, h);
        out = j.w ? round(j.yt, rd(j.w, j.wt, d) * back) : back;
      }
      wr(j.y, j.yt, o + d, out);
    }
  }
}

/** rmsNormFused(x [..., D], weight [D] | null, eps, unitOffset) → y, or undefined (see the file comment). */
TL_FN(rmsNormFused) {
  TL_ARGS(4);
  TL_TRY
  const at::Tensor& x = T(0);
  const at::Tensor w = OT(1);
  const double eps = D(2);
  const bool unitOffset = B(3);
  if (!x.device().is_cpu() || !lowpOrF32(x.scalar_type()) || x.dim() < 1 || x.numel() == 0) return tl::undef(env);
  if (needsGrad({&x, &w})) return tl::undef(env);
  const int64_t Dn = x.size(-1);
  if (w.defined() && (!w.device().is_cpu() || !lowpOrF32(w.scalar_type()) || w.dim() != 1 || w.size(0) != Dn))
    return tl::undef(env);
  // decode-size inputs only: for a prefill's thousands of rows libtorch's vectorised ops are faster than this loop
  if (x.numel() > kSmall) return tl::undef(env);
  const at::Tensor xc = x.contiguous();
  const at::Tensor wc = w.defined() ? w.contiguous() : w;
  const at::ScalarType outType = w.defined() && !unitOffset ? at::promoteTypes(w.scalar_type(), x.scalar_type())
                                                            : x.scalar_type();
  at::Tensor y = at::empty(x.sizes(), x.options().dtype(outType));
  RmsJob job{xc.data_ptr(),
             y.data_ptr(),
             wc.defined() ? wc.data_ptr() : nullptr,
             x.scalar_type(),
             wc.defined() ? wc.scalar_type() : at::kFloat,
             outType,
             x.numel() / Dn,
             Dn,
             static_cast<float>(eps),
             unitOffset};
  runRows(job.rows, Dn, &rmsPart, &job);
  RET(y);
  TL_CATCH
}

// ---- LayerNorm ----
// torch.nn.LayerNorm over the last dimension; for bfloat16/float16 libtorch 1.x computes the statistics in float32
// and rounds once: y = (x − mean) · rstd · w + b. Its bfloat16 kernel is scalar: 7 ms per [729, 1152] row block, an
// eighth of SigLIP-so400m's bfloat16 encode time, where this takes a fraction of a millisecond.

struct LnJob {
  const void* x;
  void* y;
  const void* w;
  const void* b;
  at::ScalarType xt, wt, bt;
  int64_t rows, D;
  float eps;
};

__attribute__((target("avx2,fma"))) inline __m256 bf16x8(const c10::BFloat16* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
/** 8 floats → 8 bfloat16, rounded to nearest even as c10::BFloat16 (NaN → the canonical quiet NaN). */
__attribute__((target("avx2,fma"))) inline void storeBf16x8(c10::BFloat16* p, __m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}
__attribute__((target("avx2,fma"))) inline float hsum8(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

/** The bfloat16 case (x, weight and bias bfloat16: vision towers in bfloat16), in AVX2. */
__attribute__((target("avx2,fma"))) void lnRowsBf16(const LnJob& j, int64_t r0, int64_t r1) {
  const int64_t D = j.D, D8 = D - D % 8;
  const auto* w = static_cast<const c10::BFloat16*>(j.w);
  const auto* b = static_cast<const c10::BFloat16*>(j.b);
  for (int64_t r = r0; r < r1; r++) {
    const auto* x = static_cast<const c10::BFloat16*>(j.x) + r * D;
    auto* y = static_cast<c10::BFloat16*>(j.y) + r * D;
    __m256 s = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d < D8; d += 8) s = _mm256_add_ps(s, bf16x8(x + d));
    float sum = hsum8(s);
    for (; d < D; d++) sum += static_cast<float>(x[d]);
    const float mean = sum / static_cast<float>(D);
    const __m256 m = _mm256_set1_ps(mean);
    __m256 q = _mm256_setzero_ps();
    for (d = 0; d < D8; d += 8) {
      const __m256 c = _mm256_sub_ps(bf16x8(x + d), m);
      q = _mm256_fmadd_ps(c, c, q);
    }
    float var = hsum8(q);
    for (; d < D; d++) var += (static_cast<float>(x[d]) - mean) * (static_cast<float>(x[d]) - mean);
    const float rstd = 1.0f / std::sqrt(var / static_cast<float>(D) + j.eps);
    const __m256 rs = _mm256_set1_ps(rstd);
    for (d = 0; d < D8; d += 8) {
      __m256 v = _mm256_mul_ps(_mm256_sub_ps(bf16x8(x + d), m), rs);
      if (w) v = _mm256_mul_ps(v, bf16x8(w + d));
      if (b) v = _mm256_add_ps(v, bf16x8(b + d));
      storeBf16x8(y + d, v);
    }
    for (; d < D; d++) {
      float v = (static_cast<float>(x[d]) - mean) * rstd;
      if (w) v *= static_cast<float>(w[d]);
      if (b) v += static_cast<float>(b[d]);
      y[d] = c10::BFloat16(v);
    }
  }
}

bool cpuAvx2Fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

void lnPart(void* ctx, int part, int parts) {
  const LnJob& j = *static_cast<const LnJob*>(ctx);
  if (j.xt == at::kBFloat16 && (!j.w || j.wt == at::kBFloat16) && (!j.b || j.bt == at::kBFloat16) && cpuAvx2Fma()) {
    lnRowsBf16(j, j.rows * part / parts, j.rows * (part + 1) / parts);
    return;
  }
  std::vector<float> row(static_cast<size_t>(j.D));
  for (int64_t r = j.rows * part / parts; r < j.rows * (part + 1) / parts; r++) {
    const int64_t o = r * j.D;
    double sum = 0;
    for (int64_t d = 0; d < j.D; d++) {
      row[d] = rd(j.x, j.xt, o + d);
      sum += row[d];
    }
    const float mean = static_cast<float>(sum / static_cast<double>(j.D));
    double var = 0;
    for (int64_t d = 0; d < j.D; d++) {
      const double c = row[d] - mean;
      var += c * c;
    }
    const float rstd = 1.0f / std::sqrt(static_cast<float>(var / static_cast<double>(j.D)) + j.eps);
    for (int64_t d = 0; d < j.D; d++) {
      float v = (row[d] - mean) * rstd;
      if (j.w) v *= rd(j.w, j.wt, d);
      if (j.b) v += rd(j.b, j.bt, d);
      wr(j.y, j.xt, o + d, v);
    }
  }
}

/** layerNormFused(x [..., D], weight [D] | null, bias [D] | null, eps) → y in x's dtype, or undefined. */
TL_FN(layerNormFused) {
  TL_ARGS(4);
  TL_TRY
  const at::Tensor& x = T(0);
  const at::Tensor w = OT(1);
  const at::Tensor b = OT(2);
  const double eps = D(3);
  if (!x.device().is_cpu() || !lowpOrF32(x.scalar_type()) || x.dim() < 1 || x.numel() == 0) return tl::undef(env);
  if (needsGrad({&x, &w, &b})) return tl::undef(env);
  const int64_t Dn = x.size(-1);
  for (const at::Tensor* t : {&w, &b})
    if (t->defined() && (!t->device().is_cpu() || !lowpOrF32(t->scalar_type()) || t->dim() != 1 || t->size(0) != Dn))
      return tl::undef(env);
  const at::Tensor xc = x.contiguous();
  const at::Tensor wc = w.defined() ? w.contiguous() : w;
  const at::Tensor bc = b.defined() ? b.contiguous() : b;
  at::Tensor y = at::empty(x.sizes(), x.options());
  LnJob job{xc.data_ptr(),
            y.data_ptr(),
            wc.defined() ? wc.data_ptr() : nullptr,
            bc.defined() ? bc.data_ptr() : nullptr,
            x.scalar_type(),
            wc.defined() ? wc.scalar_type() : at::kFloat,
            bc.defined() ? bc.scalar_type() : at::kFloat,
            x.numel() / Dn,
            Dn,
            static_cast<float>(eps)};
  runRows(job.rows, Dn, &lnPart, &job);
  RET(y);
  TL_CATCH
}

// ---- rotary embeddings ----
// transformers: out = x·cos + rotate_half(x)·sin on the first `rot` channels (rotate_half(x) = cat(−x2, x1)), the
// rest passed through; cos/sin in the model dtype, each product and the sum rounded to it.

struct RopeJob {
  const char* x;
  char* y;
  const char* cos;
  const char* sin;
  at::ScalarType t;
  size_t es;
  int64_t B, H, L, D, rot;
  int64_t xs0, xs1, xs2;  // x strides (elements) over B, H, L; last dim contiguous
  int64_t cs0, cs2;       // cos/sin strides over B, L (their H dim is broadcast)
};

void ropePart(void* ctx, int part, int parts) {
  const RopeJob& j = *static_cast<const RopeJob*>(ctx);
  const int64_t rows = j.B * j.H * j.L, half = j.rot / 2;
  for (int64_t r = rows * part / parts; r < rows * (part + 1) / parts; r++) {
    const int64_t b = r / (j.H * j.L), h = (r / j.L) % j.H, l = r % j.L;
    const char* xr = j.x + (b * j.xs0 + h * j.xs1 + l * j.xs2) * static_cast<int64_t>(j.es);
    char* yr = j.y + (b * j.xs0 + h * j.xs1 + l * j.xs2) * static_cast<int64_t>(j.es);
    const char* cr = j.cos + (b * j.cs0 + l * j.cs2) * static_cast<int64_t>(j.es);
    const char* sr = j.sin + (b * j.cs0 + l * j.cs2) * static_cast<int64_t>(j.es);
    for (int64_t d = 0; d < j.rot; d++) {
      const float xv = rd(xr, j.t, d);
      const float rv = d < half ? -rd(xr, j.t, d + half) : rd(xr, j.t, d - half);
      const float a = round(j.t, xv * rd(cr, j.t, d));
      const float b2 = round(j.t, rv * rd(sr, j.t, d));
      wr(yr, j.t, d, a + b2);
    }
    if (j.rot < j.D) std::memcpy(yr + j.rot * j.es, xr + j.rot * j.es, static_cast<size_t>(j.D - j.rot) * j.es);
  }
}

/** ropeFused(x [B, H, L, D], cos [B, 1, L, rot], sin [B, 1, L, rot]) → y like x (same strides), or undefined. */
TL_FN(ropeFused) {
  TL_ARGS(3);
  TL_TRY
  const at::Tensor& x = T(0);
  const at::Tensor& c = T(1);
  const at::Tensor& s = T(2);
  const auto t = x.scalar_type();
  if (!x.device().is_cpu() || !lowpOrF32(t) || c.scalar_type() != t || s.scalar_type() != t) return tl::undef(env);
  if (needsGrad({&x, &c, &s})) return tl::undef(env);
  if (x.dim() != 4 || c.dim() != 4 || s.dim() != 4 || x.stride(3) != 1) return tl::undef(env);
  const int64_t B = x.size(0), H = x.size(1), L = x.size(2), Dh = x.size(3), rot = c.size(3);
  if (rot % 2 != 0 || rot > Dh || rot < 2 || s.size(3) != rot || c.size(2) != L || s.size(2) != L ||
      (c.size(0) != B && c.size(0) != 1) || c.size(1) != 1 || s.size(1) != 1 || s.size(0) != c.size(0))
    return tl::undef(env);
  if (x.numel() > kSmall) return tl::undef(env);  // decode-size only, as rmsNormFused
  const at::Tensor cc = c.contiguous(), sc = s.contiguous();
  // y with x's strides when they are dense (the transposed [B, L, H, D] projections), else contiguous
  at::Tensor y = at::empty_like(x);
  if (y.strides() != x.strides()) return tl::undef(env);
  RopeJob job{static_cast<const char*>(x.data_ptr()),
              static_cast<char*>(y.data_ptr()),
              static_cast<const char*>(cc.data_ptr()),
              static_cast<const char*>(sc.data_ptr()),
              t,
              static_cast<size_t>(x.element_size()),
              B,
              H,
              L,
              Dh,
              rot,
              x.stride(0),
              x.stride(1),
              x.stride(2),
              cc.size(0) == 1 ? 0 : cc.stride(0),
              cc.stride(2)};
  runRows(B * H * L, Dh, &ropePart, &job);
  RET(y);
  TL_CATCH
}

}  // namespace

namespace tl {
void registerFused(napi_env env, napi_value exports) {
  defineFn(env, exports, "rmsNormFused", rmsNormFused);
  defineFn(env, exports, "ropeFused", ropeFused);
  defineFn(env, exports, "layerNormFused", layerNormFused);
}
}  // namespace tl
