// libtorch's own optimisers (AdamW with decoupled weight decay, SGD) with parameter groups, and clip-grad-norm.
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <memory>

#include "common.h"

using namespace tl;

namespace {
std::vector<std::unique_ptr<torch::optim::Optimizer>>& optimizers() {
  thread_local std::vector<std::unique_ptr<torch::optim::Optimizer>> o;
  return o;
}
torch::optim::Optimizer& optAt(napi_env env, napi_value v) {
  int64_t id = getInt(env, v);
  auto& o = optimizers();
  if (id < 0 || id >= static_cast<int64_t>(o.size()) || !o[id]) throw JsError("optimizer was used after dispose()");
  return *o[id];
}
napi_value prop(napi_env env, napi_value obj, const char* name) { return property(env, obj, name); }
double numOr(napi_env env, napi_value obj, const char* name, double dflt) {
  napi_value v = prop(env, obj, name);
  return isNullish(env, v) ? dflt : getNum(env, v);
}
napi_value registerOptimizer(napi_env env, std::unique_ptr<torch::optim::Optimizer> opt) {
  auto& o = optimizers();
  o.push_back(std::move(opt));
  return num(env, o.size() - 1);
}
template <typename Options>
std::vector<torch::optim::OptimizerParamGroup> groupsOf(napi_env env, napi_value groups, const Options& defaults,
                                                       void (*apply)(napi_env, napi_value, Options&)) {
  const uint32_t n = arrayLength(env, groups, "parameter groups");
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (uint32_t i = 0; i < n; i++) {
    napi_value g = element(env, groups, i);
    auto params = getTensorList(env, prop(env, g, "params"));
    auto o = std::make_unique<Options>(defaults);
    apply(env, g, *o);
    out.emplace_back(std::move(params), std::move(o));
  }
  return out;
}
}  // namespace

// adamw(groups [{params, lr, weightDecay}], {lr, beta1, beta2, eps, weightDecay, amsgrad})
TL_FN(adamw) {
  TL_ARGS(2);
  TL_TRY torch::optim::AdamWOptions d(numOr(env, argv[1], "lr", 1e-3));
  d.betas(std::make_tuple(numOr(env, argv[1], "beta1", 0.9), numOr(env, argv[1], "beta2", 0.999)))
      .eps(numOr(env, argv[1], "eps", 1e-8))
      .weight_decay(numOr(env, argv[1], "weightDecay", 1e-2))
      .amsgrad(numOr(env, argv[1], "amsgrad", 0) != 0);
  auto groups = groupsOf<torch::optim::AdamWOptions>(env, argv[0], d, [](napi_env env, napi_value g, auto& o) {
    o.lr(numOr(env, g, "lr", o.lr()));
    o.weight_decay(numOr(env, g, "weightDecay", o.weight_decay()));
  });
  return registerOptimizer(env, std::make_unique<torch::optim::AdamW>(std::move(groups), d));
  TL_CATCH
}

// sgd(groups, {lr, momentum, dampening, weightDecay, nesterov})
TL_FN(sgd) {
  TL_ARGS(2);
  TL_TRY torch::optim::SGDOptions d(numOr(env, argv[1], "lr", 1e-2));
  d.momentum(numOr(env, argv[1], "momentum", 0))
      .dampening(numOr(env, argv[1], "dampening", 0))
      .weight_decay(numOr(env, argv[1], "weightDecay", 0))
      .nesterov(numOr(env, argv[1], "nesterov", 0) != 0);
  auto groups = groupsOf<torch::optim::SGDOptions>(env, argv[0], d, [](napi_env env, napi_value g, auto& o) {
    o.lr(numOr(env, g, "lr", o.lr()));
    o.weight_decay(numOr(env, g, "weightDecay", o.weight_decay()));
  });
  return registerOptimizer(env, std::make_unique<torch::optim::SGD>(std::move(groups), d));
  TL_CATCH
}

TL_FN(optStep) {
  TL_ARGS(1);
  TL_TRY torch::NoGradGuard ng;
  optAt(env, argv[0]).step();
  return undef(env);
  TL_CATCH
}
TL_FN(optZeroGrad) {
  TL_ARGS(1);
  TL_TRY for (auto& g : optAt(env, argv[0]).param_groups()) for (auto& p : g.params()) p.mutable_grad().reset();
  return undef(env);
  TL_CATCH
}
TL_FN(optSetLr) {  // (id, group, lr)
  TL_ARGS(3);
  TL_TRY auto& groups = optAt(env, argv[0]).param_groups();
  auto i = I(1);
  if (i < 0 || i >= static_cast<int64_t>(groups.size())) throw JsError("optimizer has no parameter group " + std::to_string(i));
  groups[i].options().set_lr(D(2));
  return undef(env);
  TL_CATCH
}
TL_FN(optGetLr) {
  TL_ARGS(2);
  TL_TRY auto& groups = optAt(env, argv[0]).param_groups();
  auto i = I(1);
  if (i < 0 || i >= static_cast<int64_t>(groups.size())) throw JsError("optimizer has no parameter group " + std::to_string(i));
  return num(env, groups[i].options().get_lr());
  TL_CATCH
}
TL_FN(optFree) {
  TL_ARGS(1);
  TL_TRY auto id = I(0);
  auto& o = optimizers();
  if (id >= 0 && id < static_cast<int64_t>(o.size())) o[id].reset();
  return undef(env);
  TL_CATCH
}

// adamwState(id) -> [[step, exp_avg, exp_avg_sq] | null per parameter, in group order]
TL_FN(adamwGetState) {
  TL_ARGS(1);
  TL_TRY auto& opt = optAt(env, argv[0]);
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t k = 0;
  for (auto& g : opt.param_groups())
    for (auto& p : g.params()) {
      auto it = opt.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      napi_value e;
      if (it == opt.state().end()) {
        napi_get_null(env, &e);
      } else {
        auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
        napi_create_array(env, &e);
        napi_set_element(env, e, 0, num(env, static_cast<double>(s.step())));
        napi_set_element(env, e, 1, wrap(env, s.exp_avg()));
        napi_set_element(env, e, 2, wrap(env, s.exp_avg_sq()));
      }
      napi_set_element(env, arr, k++, e);
    }
  return arr;
  TL_CATCH
}
// adamwSetState(id, [[step, exp_avg, exp_avg_sq] | null ...]): tensors are cloned into the optimiser.
TL_FN(adamwSetState) {
  TL_ARGS(2);
  TL_TRY auto& opt = optAt(env, argv[0]);
  const uint32_t n = arrayLength(env, argv[1], "adamw state");
  size_t count = 0;
  for (auto& g : opt.param_groups()) count += g.params().size();
  if (count != n)
    throw JsError("adamw state has " + std::to_string(n) + " entries but the optimiser has " + std::to_string(count) +
                  " parameters");
  // validated in full before anything changes, so a bad entry leaves the optimiser as it was
  std::vector<std::pair<std::string, std::unique_ptr<torch::optim::AdamWParamState>>> next;
  uint32_t k = 0;
  for (auto& g : opt.param_groups())
    for (auto& p : g.params()) {
      napi_value e = element(env, argv[1], k++);
      auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
      if (isNullish(env, e)) {
        next.emplace_back(key, nullptr);
        continue;
      }
      if (arrayLength(env, e, "[step, exp_avg, exp_avg_sq]") != 3)
        throw JsError("adamw state entry " + std::to_string(k - 1) + ": expected [step, exp_avg, exp_avg_sq]");
      auto st = std::make_unique<torch::optim::AdamWParamState>();
      const int64_t step = getInt(env, element(env, e, 0));
      if (step < 0) throw JsError("adamw state entry " + std::to_string(k - 1) + ": negative step");
      st->step(step);
      auto m = tensorAt(env, element(env, e, 1)), v = tensorAt(env, element(env, e, 2));
      if (!m.sizes().equals(p.sizes()) || !v.sizes().equals(p.sizes()))
        throw JsError("adamw state shape does not match parameter " + std::to_string(k - 1));
      st->exp_avg(m.detach().to(p.options()).clone());
      st->exp_avg_sq(v.detach().to(p.options()).clone());
      next.emplace_back(key, std::move(st));
    }
  for (auto& [key, st] : next) {
    if (st)
      opt.state()[key] = std::move(st);
    else
      opt.state().erase(key);
  }
  return undef(env);
  TL_CATCH
}

TL_FN(clipGradNorm) {  // (params[], maxNorm, normType) -> total norm before clipping
  TL_ARGS(3);
  TL_TRY auto params = getTensorList(env, argv[0]);
  double maxNorm = D(1), p = D(2);
  if (!(maxNorm >= 0) || std::isnan(p)) throw JsError("clipGradNorm: expected maxNorm ≥ 0 and a norm type");
  torch::NoGradGuard ng;
  std::vector<at::Tensor> norms;
  for (auto& t : params)
    if (t.grad().defined()) norms.push_back(t.grad().detach().norm(p).to(at::kDouble));
  if (norms.empty()) return num(env, 0);
  // Same rule as torch.nn.utils.clip_grad_norm_: scale by max_norm / (total + 1e-6) when that is below 1.
  auto total = std::isinf(p) ? at::stack(norms).max() : at::stack(norms).norm(p);
  double totalNorm = total.item<double>();
  double coef = maxNorm / (totalNorm + 1e-6);
  if (coef < 1)
    for (auto& t : params)
      if (t.grad().defined()) t.mutable_grad().mul_(coef);
  return num(env, totalNorm);
  TL_CATCH
}

namespace tl {
void registerOptim(napi_env env, napi_value exports) {
#define R(n) defineFn(env, exports, #n, n)
  R(adamw);
  R(sgd);
  R(optStep);
  R(optZeroGrad);
  R(optSetLr);
  R(optGetLr);
  R(optFree);
  R(adamwGetState);
  R(adamwSetState);
  R(clipGradNorm);
#undef R
}
}  // namespace tl
