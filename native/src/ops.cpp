// Tensor ops: one line of libtorch each. Unary/binary/reduction ops are selected by a small integer code
// (the table in src/torch/native.ts mirrors these switches) to keep the binding small and each call cheap.
#include <ATen/ATen.h>
#include <torch/version.h>

#include <limits>

#include "common.h"

using namespace tl;

static at::Tensor unaryOp(int code, const at::Tensor& x) {
  switch (code) {
    case 0: return x.neg();
    case 1: return x.abs();
    case 2: return x.exp();
    case 3: return x.log();
    case 4: return x.sqrt();
    case 5: return x.rsqrt();
    case 6: return x.tanh();
    case 7: return x.sigmoid();
    case 8: return x.erf();
    case 9: return x.cos();
    case 10: return x.sin();
    case 11: return x.relu();
    case 12: return at::silu(x);
    case 13: return at::gelu(x, "none");
    case 14: return at::gelu(x, "tanh");
    case 15: return x.contiguous();
    case 16: return x.clone();
    case 17: return x.detach();
    case 18: return x.logical_not();
    case 19: return x.isnan();
    case 20: return x.floor();
    case 21: return x.ceil();
    case 22: return x.round();
    case 23: return x.sign();
    case 24: return x.reciprocal();
    case 25: return x.square();
    case 26: return x.log1p();
    case 27: return x.expm1();
    case 28: return x.t();
    case 29: return x.isinf();
    case 30: return x.sum();
    case 31: return x.mean();
    case 32: return x.max();
    case 33: return x.min();
    case 34: return x.argmax();
    case 35: return x.all();
    case 36: return x.any();
    case 37: return at::zeros_like(x);
    case 38: return at::ones_like(x);
    case 39: return at::softplus(x);
    case 40: return x.trunc();
    case 41: return at::log_sigmoid(x);
    case 42: return x.isfinite();
    case 43: return at::nonzero(x);
    default: throw JsError("unknown unary op " + std::to_string(code));
  }
}

static at::Tensor binaryOp(int code, const at::Tensor& a, const at::Tensor& b) {
  switch (code) {
    case 0: return a.add(b);
    case 1: return a.sub(b);
    case 2: return a.mul(b);
    case 3: return a.div(b);
    case 4: return a.pow(b);
    case 5: return a.eq(b);
    case 6: return a.ne(b);
    case 7: return a.lt(b);
    case 8: return a.le(b);
    case 9: return a.gt(b);
    case 10: return a.ge(b);
    case 11: return at::maximum(a, b);
    case 12: return at::minimum(a, b);
    case 13: return a.logical_and(b);
    case 14: return a.logical_or(b);
    case 15: return at::matmul(a, b);
    case 16: return at::bmm(a, b);
    case 17: return a.remainder(b);
    case 18: return a.div(b, "floor");
    case 19: return a.logical_xor(b);
    case 20: return at::outer(a, b);
    case 21: return at::mm(a, b);
    default: throw JsError("unknown binary op " + std::to_string(code));
  }
}

static at::Tensor scalarOp(int code, const at::Tensor& a, const at::Scalar& s) {
  switch (code) {
    case 0: return a.add(s);
    case 1: return a.sub(s);
    case 2: return a.mul(s);
    case 3: return a.div(s);
    case 4: return a.pow(s);
    case 5: return a.eq(s);
    case 6: return a.ne(s);
    case 7: return a.lt(s);
    case 8: return a.le(s);
    case 9: return a.gt(s);
    case 10: return a.ge(s);
    case 11: return at::clamp_min(a, s);
    case 12: return at::clamp_max(a, s);
    case 17: return a.remainder(s);
    case 18: return a.div(s, "floor");
    case 20: return at::rsub(a, s);
    case 21: return at::reciprocal(a).mul(s);
    case 22: return at::pow(s, a);
    default: throw JsError("unknown scalar op " + std::to_string(code));
  }
}

static at::Scalar scalarFor(const at::Tensor& a, double v) {
  if (at::isIntegralType(a.scalar_type(), /*includeBool=*/true) && std::floor(v) == v && std::abs(v) < 9.0e15)
    return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}

static at::Tensor sdpaMath(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                           double p, bool causal, double scale) {
  auto w = at::matmul(q, k.transpose(-2, -1)).mul(scale);
  if (causal) {
    const auto L = q.size(-2), S = k.size(-2);
    auto keep = at::ones({L, S}, q.options().dtype(at::kBool)).tril(0);  // top-left, as PyTorch's is_causal
    w = w.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
  }
  if (mask.defined()) {
    if (mask.scalar_type() == at::kBool)
      w = w.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity());
    else
      w = w.add(mask);
  }
  w = at::softmax(w, -1);
  if (p > 0) w = at::dropout(w, p, true);
  return at::matmul(w, v);
}

TL_FN(unary) {
  TL_ARGS(2);
  TL_TRY RET(unaryOp(static_cast<int>(I(0)), T(1)));
  TL_CATCH
}
TL_FN(binary) {
  TL_ARGS(3);
  TL_TRY RET(binaryOp(static_cast<int>(I(0)), T(1), T(2)));
  TL_CATCH
}
TL_FN(binaryScalar) {
  TL_ARGS(3);
  TL_TRY auto& a = T(1);
  RET(scalarOp(static_cast<int>(I(0)), a, scalarFor(a, D(2))));
  TL_CATCH
}

// In-place updates (optimiser-free code paths, initialisation, cache writes). code: 0 add_, 1 sub_, 2 mul_,
// 3 div_, 4 copy_; scalar versions: 0 add_, 1 sub_, 2 mul_, 3 div_, 5 fill_, 6 zero_.
TL_FN(inplace) {
  TL_ARGS(3);
  TL_TRY auto& a = T(1);
  switch (I(0)) {
    case 0: a.add_(T(2)); break;
    case 1: a.sub_(T(2)); break;
    case 2: a.mul_(T(2)); break;
    case 3: a.div_(T(2)); break;
    case 4: a.copy_(T(2)); break;
    default: throw JsError("unknown in-place op");
  }
  return undef(env);
  TL_CATCH
}
TL_FN(inplaceScalar) {
  TL_ARGS(3);
  TL_TRY auto& a = T(1);
  auto s = scalarFor(a, D(2));
  switch (I(0)) {
    case 0: a.add_(s); break;
    case 1: a.sub_(s); break;
    case 2: a.mul_(s); break;
    case 3: a.div_(s); break;
    case 5: a.fill_(s); break;
    case 6: a.zero_(); break;
    default: throw JsError("unknown in-place scalar op");
  }
  return undef(env);
  TL_CATCH
}

// reduce(code, x, dims, keepdim): 0 sum, 1 mean, 2 amax, 3 amin, 4 logsumexp, 5 var (unbiased), 6 var (biased),
// 7 std (unbiased), 8 std (biased), 9 prod (single dim), 10 all (single dim), 11 any (single dim)
TL_FN(reduce) {
  TL_ARGS(4);
  TL_TRY auto& x = T(1);
  auto dims = IL(2);
  bool keep = B(3);
  switch (I(0)) {
    case 0: RET(x.sum(dims, keep));
    case 1: RET(x.mean(dims, keep));
    case 2: RET(x.amax(dims, keep));
    case 3: RET(x.amin(dims, keep));
    case 4: RET(at::logsumexp(x, dims, keep));
    case 5: RET(x.var(at::OptionalIntArrayRef(dims), /*unbiased=*/true, keep));
    case 6: RET(x.var(at::OptionalIntArrayRef(dims), /*unbiased=*/false, keep));
    case 7: RET(x.std(at::OptionalIntArrayRef(dims), /*unbiased=*/true, keep));
    case 8: RET(x.std(at::OptionalIntArrayRef(dims), /*unbiased=*/false, keep));
    case 9: RET(x.prod(dims.at(0), keep));
    case 10: RET(x.all(dims.at(0), keep));
    case 11: RET(x.any(dims.at(0), keep));
    default: throw JsError("unknown reduction");
  }
  TL_CATCH
}
TL_FN(norm) {
  TL_ARGS(4);
  TL_TRY auto& x = T(0);
  if (tl::isNullish(env, argv[2])) RET(at::norm(x, D(1)));
  RET(at::norm(x, D(1), IL(2), B(3)));
  TL_CATCH
}
TL_FN(maxDim) {  // (x, dim, keepdim, isMin) -> [values, indices]
  TL_ARGS(4);
  TL_TRY auto r = B(3) ? at::min(T(0), I(1), B(2)) : at::max(T(0), I(1), B(2));
  return tensorArray(env, {std::get<0>(r), std::get<1>(r)});
  TL_CATCH
}
TL_FN(argmax) {
  TL_ARGS(4);
  TL_TRY RET(B(3) ? at::argmin(T(0), I(1), B(2)) : at::argmax(T(0), I(1), B(2)));
  TL_CATCH
}
TL_FN(topk) {  // (x, k, dim, largest, sorted)
  TL_ARGS(5);
  TL_TRY auto r = at::topk(T(0), I(1), I(2), B(3), B(4));
  return tensorArray(env, {std::get<0>(r), std::get<1>(r)});
  TL_CATCH
}
TL_FN(sort) {  // (x, dim, descending, stable)
  TL_ARGS(4);
  TL_TRY auto r = at::sort(T(0), B(3), I(1), B(2));
  return tensorArray(env, {std::get<0>(r), std::get<1>(r)});
  TL_CATCH
}
TL_FN(cumsum) {
  TL_ARGS(2);
  TL_TRY RET(at::cumsum(T(0), I(1)));
  TL_CATCH
}
TL_FN(softmax) {  // (x, dim, dtype?)
  TL_ARGS(3);
  TL_TRY if (tl::isNullish(env, argv[2])) RET(at::softmax(T(0), I(1)));
  RET(at::softmax(T(0), I(1), dtypeOf(I(2))));
  TL_CATCH
}
TL_FN(logSoftmax) {
  TL_ARGS(3);
  TL_TRY if (tl::isNullish(env, argv[2])) RET(at::log_softmax(T(0), I(1)));
  RET(at::log_softmax(T(0), I(1), dtypeOf(I(2))));
  TL_CATCH
}
TL_FN(clamp) {  // (x, min|null, max|null)
  TL_ARGS(3);
  TL_TRY c10::optional<at::Scalar> lo, hi;
  if (!tl::isNullish(env, argv[1])) lo = at::Scalar(D(1));
  if (!tl::isNullish(env, argv[2])) hi = at::Scalar(D(2));
  RET(at::clamp(T(0), lo, hi));
  TL_CATCH
}

// ---- shape ----
TL_FN(view) {
  TL_ARGS(2);
  TL_TRY RET(T(0).view(IL(1)));
  TL_CATCH
}
TL_FN(reshape) {
  TL_ARGS(2);
  TL_TRY RET(T(0).reshape(IL(1)));
  TL_CATCH
}
TL_FN(permute) {
  TL_ARGS(2);
  TL_TRY RET(T(0).permute(IL(1)));
  TL_CATCH
}
TL_FN(transpose) {
  TL_ARGS(3);
  TL_TRY RET(T(0).transpose(I(1), I(2)));
  TL_CATCH
}
TL_FN(expand) {
  TL_ARGS(2);
  TL_TRY RET(T(0).expand(IL(1)));
  TL_CATCH
}
TL_FN(repeat) {
  TL_ARGS(2);
  TL_TRY RET(T(0).repeat(IL(1)));
  TL_CATCH
}
TL_FN(repeatInterleave) {
  TL_ARGS(3);
  TL_TRY RET(T(0).repeat_interleave(I(1), I(2)));
  TL_CATCH
}
TL_FN(flatten) {
  TL_ARGS(3);
  TL_TRY RET(T(0).flatten(I(1), I(2)));
  TL_CATCH
}
TL_FN(unsqueeze) {
  TL_ARGS(2);
  TL_TRY RET(T(0).unsqueeze(I(1)));
  TL_CATCH
}
TL_FN(squeeze) {
  TL_ARGS(2);
  TL_TRY if (tl::isNullish(env, argv[1])) RET(T(0).squeeze());
  RET(T(0).squeeze(I(1)));
  TL_CATCH
}
TL_FN(narrow) {
  TL_ARGS(4);
  TL_TRY RET(T(0).narrow(I(1), I(2), I(3)));
  TL_CATCH
}
TL_FN(select) {
  TL_ARGS(3);
  TL_TRY RET(T(0).select(I(1), I(2)));
  TL_CATCH
}
TL_FN(slice) {  // (x, dim, start, end, step)
  TL_ARGS(5);
  TL_TRY RET(T(0).slice(I(1), I(2), I(3), I(4)));
  TL_CATCH
}
TL_FN(split) {  // (x, sizes[] | size, dim)
  TL_ARGS(3);
  TL_TRY bool isArr = false;
  napi_is_array(env, argv[1], &isArr);
  if (isArr) return tensorArray(env, T(0).split_with_sizes(IL(1), I(2)));
  return tensorArray(env, T(0).split(I(1), I(2)));
  TL_CATCH
}
TL_FN(chunk) {
  TL_ARGS(3);
  TL_TRY return tensorArray(env, T(0).chunk(I(1), I(2)));
  TL_CATCH
}
TL_FN(cat) {
  TL_ARGS(2);
  TL_TRY RET(at::cat(getTensorList(env, argv[0]), I(1)));
  TL_CATCH
}
TL_FN(stack) {
  TL_ARGS(2);
  TL_TRY RET(at::stack(getTensorList(env, argv[0]), I(1)));
  TL_CATCH
}
TL_FN(indexSelect) {
  TL_ARGS(3);
  TL_TRY RET(T(0).index_select(I(1), T(2)));
  TL_CATCH
}
TL_FN(gather) {
  TL_ARGS(3);
  TL_TRY RET(T(0).gather(I(1), T(2)));
  TL_CATCH
}
TL_FN(scatter) {  // (x, dim, index, src, add)
  TL_ARGS(5);
  TL_TRY if (B(4)) RET(T(0).scatter_add(I(1), T(2), T(3)));
  RET(T(0).scatter(I(1), T(2), T(3)));
  TL_CATCH
}
TL_FN(indexTensor) {  // x[idx] along dim 0 with a long or bool tensor
  TL_ARGS(2);
  TL_TRY c10::List<c10::optional<at::Tensor>> idx;
  idx.push_back(T(1));
  RET(T(0).index(idx));
  TL_CATCH
}
TL_FN(indexPut) {  // (x, indices[], values, accumulate) -> new tensor (out of place)
  TL_ARGS(4);
  TL_TRY c10::List<c10::optional<at::Tensor>> idx;
  for (auto& t : getTensorList(env, argv[1])) idx.push_back(t);
  RET(T(0).index_put(idx, T(2), B(3)));
  TL_CATCH
}
TL_FN(maskedFill) {
  TL_ARGS(3);
  TL_TRY RET(T(0).masked_fill(T(1), D(2)));
  TL_CATCH
}
TL_FN(maskedScatter) {
  TL_ARGS(3);
  TL_TRY RET(T(0).masked_scatter(T(1), T(2)));
  TL_CATCH
}
TL_FN(where) {
  TL_ARGS(3);
  TL_TRY RET(at::where(T(0), T(1), T(2)));
  TL_CATCH
}
TL_FN(triu) {
  TL_ARGS(2);
  TL_TRY RET(T(0).triu(I(1)));
  TL_CATCH
}
TL_FN(tril) {
  TL_ARGS(2);
  TL_TRY RET(T(0).tril(I(1)));
  TL_CATCH
}
TL_FN(pad) {  // constant pad: (x, pads[], value)
  TL_ARGS(3);
  TL_TRY RET(at::constant_pad_nd(T(0), IL(1), D(2)));
  TL_CATCH
}
TL_FN(flip) {
  TL_ARGS(2);
  TL_TRY RET(T(0).flip(IL(1)));
  TL_CATCH
}
TL_FN(to) {  // (x, dtype|null, device|null, copy)
  TL_ARGS(4);
  TL_TRY auto& x = T(0);
  auto dt = tl::isNullish(env, argv[1]) ? x.scalar_type() : dtypeOf(I(1));
  auto dev = tl::isNullish(env, argv[2]) ? x.device() : deviceOf(env, argv[2]);
  RET(x.to(dev, dt, /*non_blocking=*/false, /*copy=*/B(3)));
  TL_CATCH
}

// ---- nn ----
TL_FN(linear) {
  TL_ARGS(3);
  TL_TRY RET(at::linear(T(0), T(1), OT(2)));
  TL_CATCH
}
TL_FN(conv2d) {  // (x, w, b?, stride[], padding[], dilation[], groups)
  TL_ARGS(7);
  TL_TRY RET(at::conv2d(T(0), T(1), OT(2), IL(3), IL(4), IL(5), I(6)));
  TL_CATCH
}
TL_FN(layerNorm) {  // (x, normalizedShape[], w?, b?, eps)
  TL_ARGS(5);
  TL_TRY RET(at::layer_norm(T(0), IL(1), OT(2), OT(3), D(4)));
  TL_CATCH
}
TL_FN(embedding) {  // (weight, indices, paddingIdx)
  TL_ARGS(3);
  TL_TRY RET(at::embedding(T(0), T(1), tl::isNullish(env, argv[2]) ? -1 : I(2)));
  TL_CATCH
}
TL_FN(dropout) {
  TL_ARGS(3);
  TL_TRY RET(at::dropout(T(0), D(1), B(2)));
  TL_CATCH
}
// crossEntropy(logits [N,C], target [N], ignoreIndex, reduction 0 none/1 mean/2 sum, labelSmoothing)
TL_FN(crossEntropy) {
  TL_ARGS(5);
  TL_TRY RET(at::cross_entropy_loss(T(0), T(1), {}, I(3), I(2), D(4)));
  TL_CATCH
}
// Scaled dot-product attention (q,k,v [..., L, E]; mask bool (true = attend) or additive float; causal).
// Causal is PyTorch's: query i attends to keys 0..i, aligned top-left (torch.ones(L, S).tril(0)), also when L ≠ S; as in
// PyTorch 2.x an explicit mask and is_causal together are refused.
TL_FN(sdpa) {  // (q, k, v, mask?, dropoutP, isCausal, scale|null)
  TL_ARGS(7);
  TL_TRY auto& q = T(0);
  auto& k = T(1);
  auto& v = T(2);
  auto mask = OT(3);
  double p = D(4);
  bool causal = B(5);
  if (causal && mask.defined()) throw JsError("scaled_dot_product_attention: an explicit attn_mask cannot be combined with is_causal=True");
  if (q.dim() < 2 || k.dim() < 2) throw JsError("scaled_dot_product_attention: q and k need at least 2 dimensions");
  double scale = tl::isNullish(env, argv[6]) ? 1.0 / std::sqrt(static_cast<double>(q.size(-1))) : D(6);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  RET(at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt, p,
                                       causal, scale));
#else
  RET(sdpaMath(q, k, v, mask, p, causal, scale));
#endif
  TL_CATCH
}

// The same maths without the fused kernel (libtorch < 2.1, where at::scaled_dot_product_attention has no scale; also
// callable on any version as sdpaMath, so the fallback is tested everywhere).
TL_FN(sdpaMathFn) {  // same arguments as sdpa
  TL_ARGS(7);
  TL_TRY at::Tensor q = T(0), k = T(1), v = T(2);
  auto mask = OT(3);
  const double p = D(4);
  const bool causal = B(5);
  if (causal && mask.defined()) throw JsError("scaled_dot_product_attention: an explicit attn_mask cannot be combined with is_causal=True");
  if (q.dim() < 2 || k.dim() < 2) throw JsError("scaled_dot_product_attention: q and k need at least 2 dimensions");
  const double scale = tl::isNullish(env, argv[6]) ? 1.0 / std::sqrt(static_cast<double>(q.size(-1))) : D(6);
  RET(sdpaMath(q, k, v, mask, p, causal, scale));
  TL_CATCH
}

TL_FN(multinomial) {  // (probs, n, replacement, generator?)
  TL_ARGS(4);
  TL_TRY RET(at::multinomial(T(0), I(1), B(2), genOf(env, argv[3])));
  TL_CATCH
}
TL_FN(allclose) {
  TL_ARGS(4);
  TL_TRY return boolean(env, at::allclose(T(0), T(1), D(2), D(3)));
  TL_CATCH
}

namespace tl {
void registerOps(napi_env env, napi_value exports) {
#define R(n) defineFn(env, exports, #n, n)
  R(unary);
  R(binary);
  R(binaryScalar);
  R(inplace);
  R(inplaceScalar);
  R(reduce);
  R(norm);
  R(maxDim);
  R(argmax);
  R(topk);
  R(sort);
  R(cumsum);
  R(softmax);
  R(logSoftmax);
  R(clamp);
  R(view);
  R(reshape);
  R(permute);
  R(transpose);
  R(expand);
  R(repeat);
  R(repeatInterleave);
  R(flatten);
  R(unsqueeze);
  R(squeeze);
  R(narrow);
  R(select);
  R(slice);
  R(split);
  R(chunk);
  R(cat);
  R(stack);
  R(indexSelect);
  R(gather);
  R(scatter);
  R(indexTensor);
  R(indexPut);
  R(maskedFill);
  R(maskedScatter);
  R(where);
  R(triu);
  R(tril);
  R(pad);
  R(flip);
  R(to);
  R(linear);
  R(conv2d);
  R(layerNorm);
  R(embedding);
  R(dropout);
  R(crossEntropy);
  R(sdpa);
  defineFn(env, exports, "sdpaMath", sdpaMathFn);
  R(multinomial);
  R(allclose);
#undef R
}
}  // namespace tl
