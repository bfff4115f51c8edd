// Handle table, argument helpers, tensor creation/export, metadata, autograd, threads, generators, info.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <c10/core/GradMode.h>
#include <dlfcn.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/version.h>

#include <cstring>
#include <memory>
#include <unordered_map>

#include "common.h"

namespace tl {

HandleTable& table() {
  thread_local HandleTable t;
  return t;
}

void throwJs(napi_env env, const char* msg) { napi_throw_error(env, nullptr, msg); }

void flushExternalMemory(napi_env env, bool force) {
  auto& tb = table();
  if (force || tb.pendingBytes > (8 << 20) || tb.pendingBytes < -(8 << 20)) {
    int64_t out;
    napi_adjust_external_memory(env, tb.pendingBytes, &out);
    tb.pendingBytes = 0;
  }
}

napi_value wrap(napi_env env, at::Tensor t) {
  auto& tb = table();
  uint32_t slot;
  if (!tb.freeList.empty()) {
    slot = tb.freeList.back();
    tb.freeList.pop_back();
  } else {
    if (tb.slots.size() >= (1u << 24)) throw JsError("too many live tensors (16M): dispose tensors or use scopes");
    slot = static_cast<uint32_t>(tb.slots.size());
    tb.slots.emplace_back();
    tb.gens.push_back(1);
    tb.bytes.push_back(0);
  }
  int64_t nb = t.defined() && t.has_storage() ? static_cast<int64_t>(t.numel() * t.element_size()) : 0;
  tb.slots[slot] = std::move(t);
  tb.bytes[slot] = nb;
  tb.pendingBytes += nb;
  tb.liveBytes += nb;
  tb.live++;
  if (tb.pendingBytes > (8 << 20)) flushExternalMemory(env, false);
  napi_value out;
  napi_create_double(env, tb.gens[slot] * kSlotBits + slot, &out);
  return out;
}

static inline bool decode(double h, uint32_t* slot, uint32_t* gen) {
  if (!(h >= 0)) return false;
  uint64_t v = static_cast<uint64_t>(h);
  *slot = static_cast<uint32_t>(v & 0xFFFFFF);
  *gen = static_cast<uint32_t>(v >> 24);
  return true;
}

at::Tensor& tensorAt(napi_env env, napi_value v) {
  double h;
  if (napi_get_value_double(env, v, &h) != napi_ok) throw JsError("expected a tensor handle");
  uint32_t slot, gen;
  auto& tb = table();
  if (!decode(h, &slot, &gen) || slot >= tb.slots.size() || tb.gens[slot] != gen || !tb.slots[slot].defined())
    throw JsError("tensor was used after dispose() (or belongs to another thread)");
  return tb.slots[slot];
}

bool freeHandle(napi_env env, double h) {
  uint32_t slot, gen;
  auto& tb = table();
  if (!decode(h, &slot, &gen) || slot >= tb.slots.size() || tb.gens[slot] != gen) return false;
  if (!tb.slots[slot].defined()) return false;
  tb.slots[slot] = at::Tensor();
  tb.gens[slot] = (tb.gens[slot] + 1) & 0x1FFFFFFF;
  if (tb.gens[slot] == 0) tb.gens[slot] = 1;
  tb.pendingBytes -= tb.bytes[slot];
  tb.liveBytes -= tb.bytes[slot];
  tb.bytes[slot] = 0;
  tb.freeList.push_back(slot);
  tb.live--;
  return true;
}

bool isNullish(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_undefined || t == napi_null;
}

at::Tensor optTensor(napi_env env, napi_value v) {
  if (isNullish(env, v)) return at::Tensor();
  return tensorAt(env, v);
}

double getNum(napi_env env, napi_value v) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    bool b;
    if (napi_get_value_bool(env, v, &b) == napi_ok) return b ? 1 : 0;
    throw JsError("expected a number");
  }
  return d;
}

bool getBool(napi_env env, napi_value v) {
  bool b;
  if (napi_get_value_bool(env, v, &b) != napi_ok) {
    if (isNullish(env, v)) return false;
    return getNum(env, v) != 0;
  }
  return b;
}

std::string getStr(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) throw JsError("expected a string");
  std::string s(len, '\0');
  napi_get_value_string_utf8(env, v, s.data(), len + 1, &len);
  return s;
}

std::vector<int64_t> getIntList(napi_env env, napi_value v) {
  bool isArr;
  napi_is_array(env, v, &isArr);
  if (!isArr) return {getInt(env, v)};
  uint32_t n;
  napi_get_array_length(env, v, &n);
  std::vector<int64_t> out(n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    out[i] = getInt(env, e);
  }
  return out;
}

std::vector<at::Tensor> getTensorList(napi_env env, napi_value v) {
  bool isArr;
  napi_is_array(env, v, &isArr);
  if (!isArr) throw JsError("expected an array of tensors");
  uint32_t n;
  napi_get_array_length(env, v, &n);
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    out.push_back(tensorAt(env, e));
  }
  return out;
}

static const at::ScalarType kDtypes[] = {at::kDouble, at::kFloat, at::kBFloat16, at::kHalf, at::kLong,
                                         at::kInt,    at::kByte,  at::kBool,     at::kChar, at::kShort};
at::ScalarType dtypeOf(int64_t code) {
  if (code < 0 || code >= 10) throw JsError("unknown dtype code " + std::to_string(code));
  return kDtypes[code];
}
int64_t dtypeCode(at::ScalarType t) {
  for (int i = 0; i < 10; i++)
    if (kDtypes[i] == t) return i;
  throw JsError(std::string("unsupported dtype ") + c10::toString(t));
}

at::Device deviceOf(napi_env env, napi_value v) {
  if (isNullish(env, v)) return at::Device(at::kCPU);
  return at::Device(getStr(env, v));
}

napi_value num(napi_env env, double d) {
  napi_value out;
  napi_create_double(env, d, &out);
  return out;
}
napi_value boolean(napi_env env, bool b) {
  napi_value out;
  napi_get_boolean(env, b, &out);
  return out;
}
napi_value str(napi_env env, const std::string& s) {
  napi_value out;
  napi_create_string_utf8(env, s.data(), s.size(), &out);
  return out;
}
napi_value undef(napi_env env) {
  napi_value out;
  napi_get_undefined(env, &out);
  return out;
}
napi_value tensorArray(napi_env env, const std::vector<at::Tensor>& ts) {
  napi_value arr;
  napi_create_array_with_length(env, ts.size(), &arr);
  for (size_t i = 0; i < ts.size(); i++) napi_set_element(env, arr, i, wrap(env, ts[i]));
  return arr;
}
napi_value intArray(napi_env env, at::IntArrayRef xs) {
  napi_value arr;
  napi_create_array_with_length(env, xs.size(), &arr);
  for (size_t i = 0; i < xs.size(); i++) napi_set_element(env, arr, i, num(env, static_cast<double>(xs[i])));
  return arr;
}

void defineFn(napi_env env, napi_value exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  napi_set_named_property(env, exports, name, fn);
}

static at::TensorOptions opts(napi_env env, napi_value dtype, napi_value device) {
  auto o = at::TensorOptions().dtype(isNullish(env, dtype) ? at::kFloat : dtypeOf(getInt(env, dtype)));
  return o.device(deviceOf(env, device));
}

// ---- generators ----
static std::vector<std::unique_ptr<at::Generator>>& generators() {
  thread_local std::vector<std::unique_ptr<at::Generator>> g;
  return g;
}
c10::optional<at::Generator> genOf(napi_env env, napi_value v) {
  if (isNullish(env, v)) return c10::nullopt;
  int64_t id = getInt(env, v);
  auto& g = generators();
  if (id < 0 || id >= static_cast<int64_t>(g.size()) || !g[id]) throw JsError("unknown generator");
  return *g[id];
}

}  // namespace tl

using namespace tl;

TL_FN(freeTensor) {
  TL_ARGS(1);
  double h;
  napi_get_value_double(env, argv[0], &h);
  return boolean(env, freeHandle(env, h));
}

TL_FN(freeMany) {
  TL_ARGS(1);
  uint32_t n;
  napi_get_array_length(env, argv[0], &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, argv[0], i, &e);
    double h;
    if (napi_get_value_double(env, e, &h) == napi_ok) freeHandle(env, h);
  }
  return undef(env);
}

TL_FN(isAlive) {
  TL_ARGS(1);
  double h;
  napi_get_value_double(env, argv[0], &h);
  uint32_t slot = static_cast<uint64_t>(h) & 0xFFFFFF, gen = static_cast<uint64_t>(h) >> 24;
  auto& tb = table();
  return boolean(env, slot < tb.slots.size() && tb.gens[slot] == gen && tb.slots[slot].defined());
}

// ---- creation ----
TL_FN(empty) {
  TL_ARGS(3);
  TL_TRY RET(at::empty(IL(0), opts(env, argv[1], argv[2])));
  TL_CATCH
}
TL_FN(zeros) {
  TL_ARGS(3);
  TL_TRY RET(at::zeros(IL(0), opts(env, argv[1], argv[2])));
  TL_CATCH
}
TL_FN(ones) {
  TL_ARGS(3);
  TL_TRY RET(at::ones(IL(0), opts(env, argv[1], argv[2])));
  TL_CATCH
}
TL_FN(full) {
  TL_ARGS(4);
  TL_TRY RET(at::full(IL(0), D(1), opts(env, argv[2], argv[3])));
  TL_CATCH
}
TL_FN(arange) {
  TL_ARGS(5);
  TL_TRY RET(at::arange(D(0), D(1), D(2), opts(env, argv[3], argv[4])));
  TL_CATCH
}
TL_FN(eye) {
  TL_ARGS(3);
  TL_TRY RET(at::eye(I(0), opts(env, argv[1], argv[2])));
  TL_CATCH
}
TL_FN(randn) {
  TL_ARGS(4);
  TL_TRY RET(at::randn(IL(0), genOf(env, argv[3]), opts(env, argv[1], argv[2])));
  TL_CATCH
}
TL_FN(rand) {
  TL_ARGS(4);
  TL_TRY RET(at::rand(IL(0), genOf(env, argv[3]), opts(env, argv[1], argv[2])));
  TL_CATCH
}
TL_FN(randint) {
  TL_ARGS(6);
  TL_TRY RET(at::randint(I(0), I(1), IL(2), genOf(env, argv[5]), opts(env, argv[3], argv[4])));
  TL_CATCH
}
TL_FN(uniform_) {
  TL_ARGS(4);
  TL_TRY T(0).uniform_(D(1), D(2), genOf(env, argv[3]));
  return undef(env);
  TL_CATCH
}
TL_FN(normal_) {
  TL_ARGS(4);
  TL_TRY T(0).normal_(D(1), D(2), genOf(env, argv[3]));
  return undef(env);
  TL_CATCH
}
TL_FN(generatorCreate) {
  TL_ARGS(1);
  TL_TRY auto& g = generators();
  g.push_back(std::make_unique<at::Generator>(at::detail::createCPUGenerator(static_cast<uint64_t>(D(0)))));
  return num(env, g.size() - 1);
  TL_CATCH
}
TL_FN(generatorSeed) {
  TL_ARGS(2);
  TL_TRY auto g = genOf(env, argv[0]);
  std::lock_guard<std::mutex> lock(g->mutex());
  g->set_current_seed(static_cast<uint64_t>(D(1)));
  return undef(env);
  TL_CATCH
}
TL_FN(manualSeed) {
  TL_ARGS(1);
  TL_TRY auto g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed(static_cast<uint64_t>(D(0)));
  return undef(env);
  TL_CATCH
}

// fromBuffer(typedArrayOrBuffer, dtype, shape, device): copies the bytes into a new tensor.
TL_FN(fromBuffer) {
  TL_ARGS(4);
  TL_TRY void* data = nullptr;
  size_t len = 0;
  bool isTa = false, isBuf = false, isAb = false;
  napi_is_typedarray(env, argv[0], &isTa);
  napi_is_buffer(env, argv[0], &isBuf);
  napi_is_arraybuffer(env, argv[0], &isAb);
  if (isTa) {
    napi_typedarray_type tt;
    size_t count, off;
    napi_value ab;
    napi_get_typedarray_info(env, argv[0], &tt, &count, &data, &ab, &off);
    static const size_t sizes[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};
    len = count * sizes[tt];
  } else if (isBuf) {
    napi_get_buffer_info(env, argv[0], &data, &len);
  } else if (isAb) {
    napi_get_arraybuffer_info(env, argv[0], &data, &len);
  } else {
    throw JsError("fromBuffer: expected a TypedArray, Buffer or ArrayBuffer");
  }
  auto dt = dtypeOf(I(1));
  auto shape = IL(2);
  int64_t n = 1;
  for (auto s : shape) n *= s;
  size_t need = static_cast<size_t>(n) * c10::elementSize(dt);
  if (need != len)
    throw JsError("fromBuffer: shape needs " + std::to_string(need) + " bytes but the buffer has " + std::to_string(len));
  auto t = at::empty(shape, at::TensorOptions().dtype(dt));
  if (len) std::memcpy(t.data_ptr(), data, len);
  auto dev = deviceOf(env, argv[3]);
  if (!dev.is_cpu()) t = t.to(dev);
  RET(t);
  TL_CATCH
}

// toBuffer(t): a Node Buffer with a copy of the (contiguous, CPU) bytes.
TL_FN(toBuffer) {
  TL_ARGS(1);
  TL_TRY auto t = T(0).detach().to(at::kCPU).contiguous();
  size_t len = t.numel() * t.element_size();
  void* dst;
  napi_value out;
  napi_create_buffer(env, len, &dst, &out);
  if (len) std::memcpy(dst, t.data_ptr(), len);
  return out;
  TL_CATCH
}

// copyInto(t, typedArray): writes the tensor's bytes into an existing buffer (no allocation in JS).
TL_FN(copyInto) {
  TL_ARGS(2);
  TL_TRY auto t = T(0).detach().to(at::kCPU).contiguous();
  void* data;
  size_t len;
  napi_typedarray_type tt;
  size_t count, off;
  napi_value ab;
  bool isBuf;
  napi_is_buffer(env, argv[1], &isBuf);
  if (isBuf) {
    napi_get_buffer_info(env, argv[1], &data, &len);
  } else {
    napi_get_typedarray_info(env, argv[1], &tt, &count, &data, &ab, &off);
    static const size_t sizes[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};
    len = count * sizes[tt];
  }
  size_t need = t.numel() * t.element_size();
  if (len < need) throw JsError("copyInto: destination too small");
  if (need) std::memcpy(data, t.data_ptr(), need);
  return undef(env);
  TL_CATCH
}

TL_FN(item) {
  TL_ARGS(1);
  TL_TRY auto& t = T(0);
  if (t.numel() != 1) throw JsError("item(): tensor has " + std::to_string(t.numel()) + " elements, expected 1");
  return num(env, t.item<double>());
  TL_CATCH
}

// ---- metadata ----
TL_FN(shape) {
  TL_ARGS(1);
  TL_TRY return intArray(env, T(0).sizes());
  TL_CATCH
}
TL_FN(strides) {
  TL_ARGS(1);
  TL_TRY return intArray(env, T(0).strides());
  TL_CATCH
}
TL_FN(dtype) {
  TL_ARGS(1);
  TL_TRY return num(env, dtypeCode(T(0).scalar_type()));
  TL_CATCH
}
TL_FN(device) {
  TL_ARGS(1);
  TL_TRY return str(env, T(0).device().str());
  TL_CATCH
}
TL_FN(numel) {
  TL_ARGS(1);
  TL_TRY return num(env, T(0).numel());
  TL_CATCH
}
TL_FN(dim) {
  TL_ARGS(1);
  TL_TRY return num(env, T(0).dim());
  TL_CATCH
}
TL_FN(isContiguous) {
  TL_ARGS(1);
  TL_TRY return boolean(env, T(0).is_contiguous());
  TL_CATCH
}
TL_FN(sameStorage) {
  TL_ARGS(2);
  TL_TRY return boolean(env, T(0).is_alias_of(T(1)));
  TL_CATCH
}

// ---- autograd ----
TL_FN(requiresGrad) {
  TL_ARGS(1);
  TL_TRY return boolean(env, T(0).requires_grad());
  TL_CATCH
}
TL_FN(setRequiresGrad) {
  TL_ARGS(2);
  TL_TRY T(0).set_requires_grad(B(1));
  return undef(env);
  TL_CATCH
}
TL_FN(isLeaf) {
  TL_ARGS(1);
  TL_TRY return boolean(env, T(0).is_leaf());
  TL_CATCH
}
TL_FN(grad) {
  TL_ARGS(1);
  TL_TRY auto g = T(0).grad();
  if (!g.defined()) {
    napi_value n;
    napi_get_null(env, &n);
    return n;
  }
  RET(g);
  TL_CATCH
}
TL_FN(setGrad) {
  TL_ARGS(2);
  TL_TRY auto& t = T(0);
  if (isNullish(env, argv[1]))
    t.mutable_grad().reset();
  else
    t.mutable_grad() = T(1).detach();
  return undef(env);
  TL_CATCH
}
TL_FN(retainGrad) {
  TL_ARGS(1);
  TL_TRY T(0).retain_grad();
  return undef(env);
  TL_CATCH
}
TL_FN(backward) {
  TL_ARGS(3);
  TL_TRY T(0).backward(OT(1), B(2) ? c10::optional<bool>(true) : c10::nullopt);
  return undef(env);
  TL_CATCH
}
TL_FN(setGradEnabled) {
  TL_ARGS(1);
  TL_TRY bool prev = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(B(0));
  return boolean(env, prev);
  TL_CATCH
}
TL_FN(isGradEnabled) { return boolean(env, c10::GradMode::is_enabled()); }
TL_FN(gradFn) {
  TL_ARGS(1);
  TL_TRY auto fn = T(0).grad_fn();
  return str(env, fn ? fn->name() : "");
  TL_CATCH
}

// ---- threads ----
typedef void (*openblas_set_fn)(int);
typedef int (*openblas_get_fn)(void);
TL_FN(setNumThreads) {
  TL_ARGS(1);
  TL_TRY int n = static_cast<int>(I(0));
  if (n < 1) throw JsError("setNumThreads: expected a positive thread count, got " + std::to_string(n));
  at::set_num_threads(n);
  if (auto f = reinterpret_cast<openblas_set_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
  return undef(env);
  TL_CATCH
}
TL_FN(getNumThreads) { return num(env, at::get_num_threads()); }
TL_FN(blasInfo) {
  napi_value out;
  napi_create_object(env, &out);
  auto getN = reinterpret_cast<openblas_get_fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  auto cfg = reinterpret_cast<char* (*)(void)>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  napi_set_named_property(env, out, "openblas", boolean(env, getN != nullptr));
  napi_set_named_property(env, out, "threads", num(env, getN ? getN() : -1));
  napi_set_named_property(env, out, "config", str(env, cfg ? cfg() : ""));
  return out;
}
TL_FN(setNumInteropThreads) {
  TL_ARGS(1);
  TL_TRY at::set_num_interop_threads(static_cast<int>(I(0)));
  return undef(env);
  TL_CATCH
}

// ---- info / memory ----
TL_FN(version) { return str(env, TORCH_VERSION); }
TL_FN(cudaAvailable) { return boolean(env, at::hasCUDA()); }
TL_FN(parallelInfo) {
  TL_TRY return str(env, at::get_parallel_info());
  TL_CATCH
}
TL_FN(buildConfig) {
  TL_TRY return str(env, at::show_config());
  TL_CATCH
}
TL_FN(memStats) {
  int64_t a, c, p, b;
  allocatorStats(&a, &c, &p, &b);
  auto& tb = table();
  napi_value out;
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "allocatedBytes", num(env, a));
  napi_set_named_property(env, out, "cachedBytes", num(env, c));
  napi_set_named_property(env, out, "peakBytes", num(env, p));
  napi_set_named_property(env, out, "allocations", num(env, b));
  napi_set_named_property(env, out, "liveTensors", num(env, tb.live));
  napi_set_named_property(env, out, "liveTensorBytes", num(env, tb.liveBytes));
  return out;
}
TL_FN(emptyCache) {
  allocatorEmptyCache();
  return undef(env);
}

namespace tl {
void registerCore(napi_env env, napi_value exports) {
#define R(n) defineFn(env, exports, #n, n)
  R(freeTensor);
  R(freeMany);
  R(isAlive);
  R(empty);
  R(zeros);
  R(ones);
  R(full);
  R(arange);
  R(eye);
  R(randn);
  R(rand);
  R(randint);
  R(uniform_);
  R(normal_);
  R(generatorCreate);
  R(generatorSeed);
  R(manualSeed);
  R(fromBuffer);
  R(toBuffer);
  R(copyInto);
  R(item);
  R(shape);
  R(strides);
  R(dtype);
  R(device);
  R(numel);
  R(dim);
  R(isContiguous);
  R(sameStorage);
  R(requiresGrad);
  R(setRequiresGrad);
  R(isLeaf);
  R(grad);
  R(setGrad);
  R(retainGrad);
  R(backward);
  R(setGradEnabled);
  R(isGradEnabled);
  R(gradFn);
  R(setNumThreads);
  R(getNumThreads);
  R(blasInfo);
  R(setNumInteropThreads);
  R(version);
  R(cudaAvailable);
  R(parallelInfo);
  R(buildConfig);
  R(memStats);
  R(emptyCache);
#undef R
}
}  // namespace tl

static napi_value Init(napi_env env, napi_value exports) {
  tl::registerReference(env, exports);
  tl::installAllocator();
  tl::registerCore(env, exports);
  tl::registerOps(env, exports);
  tl::registerOptim(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
