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

#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "common.h"
#include "pool.h"

namespace tl {

// Table ids: one per JS thread that uses the engine (the main thread and each worker), released when the thread ends,
// so a handle that travelled to another thread is recognised there.
static std::mutex tableIdsMutex;
static bool tableIdsUsed[1u << kTableBits] = {true};  // id 0 is never handed out

HandleTable::HandleTable() {
  std::lock_guard<std::mutex> lock(tableIdsMutex);
  for (uint32_t i = 1; i <= kTableMask; i++)
    if (!tableIdsUsed[i]) {
      tableIdsUsed[i] = true;
      id = i;
      return;
    }
}
HandleTable::~HandleTable() {
  std::lock_guard<std::mutex> lock(tableIdsMutex);
  if (id) tableIdsUsed[id] = false;
}

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

static inline double encode(uint32_t gen, uint32_t tableId, uint32_t slot) {
  return static_cast<double>((static_cast<uint64_t>(gen) << (kSlotBits + kTableBits)) |
                             (static_cast<uint64_t>(tableId) << kSlotBits) | slot);
}

napi_value wrap(napi_env env, at::Tensor t) {
  auto& tb = table();
  if (tb.id == 0)
    throw JsError("too many JS threads use the engine at once (at most " + std::to_string(kTableMask) + ")");
  uint32_t slot;
  if (!tb.freeList.empty()) {
    slot = tb.freeList.back();
    tb.freeList.pop_back();
  } else {
    if (tb.slots.size() > kSlotMask) throw JsError("too many live tensors (16M): dispose tensors or use scopes");
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
  napi_create_double(env, encode(tb.gens[slot], tb.id, slot), &out);
  return out;
}

HandleKind classify(napi_env env, napi_value v, uint32_t* slot) {
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_number) return HandleKind::Invalid;
  double h;
  if (napi_get_value_double(env, v, &h) != napi_ok) return HandleKind::Invalid;
  if (h == -1) return HandleKind::Stale;  // what a Tensor object holds once disposed
  // an integer in [2^32, 2^53): generation ≥ 1 and table id ≥ 1 (NaN, ±Infinity, fractions, negatives fail here)
  if (!(h >= 4294967296.0 && h < 9007199254740992.0) || std::floor(h) != h) return HandleKind::Invalid;
  const uint64_t bits = static_cast<uint64_t>(h);
  const uint32_t s = static_cast<uint32_t>(bits & kSlotMask);
  const uint32_t tid = static_cast<uint32_t>((bits >> kSlotBits) & kTableMask);
  const uint32_t gen = static_cast<uint32_t>(bits >> (kSlotBits + kTableBits));
  auto& tb = table();
  if (tid == 0) return HandleKind::Invalid;
  if (tid != tb.id) return HandleKind::OtherThread;
  if (s >= tb.slots.size() || tb.gens[s] != gen || !tb.slots[s].defined()) return HandleKind::Stale;
  *slot = s;
  return HandleKind::Live;
}

static const char* const kOtherThread =
    "tensor belongs to another JS thread (each worker has its own tensors: pass tensors between threads as data, as "
    "EngineWorker does)";

at::Tensor& tensorAt(napi_env env, napi_value v) {
  uint32_t slot = 0;
  switch (classify(env, v, &slot)) {
    case HandleKind::Live:
      return table().slots[slot];
    case HandleKind::Stale:
      throw JsError("tensor was used after dispose()");
    case HandleKind::OtherThread:
      throw JsError(kOtherThread);
    default:
      throw JsError("expected a tensor handle");
  }
}

/** Frees a live handle (true); false for a stale one (dispose is idempotent); throws for anything else. */
static bool freeValue(napi_env env, napi_value v) {
  uint32_t slot = 0;
  switch (classify(env, v, &slot)) {
    case HandleKind::Live:
      break;
    case HandleKind::Stale:
      return false;
    case HandleKind::OtherThread:
      throw JsError(kOtherThread);
    default:
      throw JsError("expected a tensor handle");
  }
  auto& tb = table();
  tb.slots[slot] = at::Tensor();
  tb.gens[slot] = (tb.gens[slot] + 1) & kGenMask;
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

static std::string numStr(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

int64_t getInt(napi_env env, napi_value v) {
  const double d = getNum(env, v);
  // int64 holds [-2^63, 2^63); a double ≥ 2^63 or a fraction is refused rather than cast (undefined behaviour)
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || std::floor(d) != d)
    throw JsError("expected an integer, got " + numStr(d));
  return static_cast<int64_t>(d);
}

uint64_t getU64(napi_env env, napi_value v) {
  const double d = getNum(env, v);
  if (!(d >= 0 && d < 18446744073709551616.0) || std::floor(d) != d)
    throw JsError("expected a non-negative integer below 2^64, got " + numStr(d));
  return static_cast<uint64_t>(d);
}

uint32_t arrayLength(napi_env env, napi_value v, const char* what) {
  bool isArr = false;
  uint32_t n = 0;
  if (napi_is_array(env, v, &isArr) != napi_ok || !isArr || napi_get_array_length(env, v, &n) != napi_ok)
    throw JsError(std::string("expected an array (") + what + ")");
  return n;
}

napi_value element(napi_env env, napi_value arr, uint32_t i) {
  napi_value e;
  if (napi_get_element(env, arr, i, &e) != napi_ok) throw JsError("could not read array element " + std::to_string(i));
  return e;
}

napi_value property(napi_env env, napi_value obj, const char* name) {
  napi_valuetype t;
  if (napi_typeof(env, obj, &t) != napi_ok || (t != napi_object && t != napi_function))
    throw JsError(std::string("expected an object with \"") + name + "\"");
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok)
    throw JsError(std::string("could not read property \"") + name + "\"");
  return v;
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
  bool isArr = false;
  napi_is_array(env, v, &isArr);
  if (!isArr) return {getInt(env, v)};
  const uint32_t n = arrayLength(env, v, "integers");
  std::vector<int64_t> out(n);
  for (uint32_t i = 0; i < n; i++) out[i] = getInt(env, element(env, v, i));
  return out;
}

std::vector<at::Tensor> getTensorList(napi_env env, napi_value v) {
  const uint32_t n = arrayLength(env, v, "tensors");
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (uint32_t i = 0; i < n; i++) out.push_back(tensorAt(env, element(env, v, i)));
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

TL_FN(freeTensor) {  // (h) -> true if freed, false if already disposed; throws for a non-handle or another thread's
  TL_ARGS(1);
  TL_TRY return boolean(env, freeValue(env, argv[0]));
  TL_CATCH
}

TL_FN(freeMany) {
  TL_ARGS(1);
  TL_TRY const uint32_t n = arrayLength(env, argv[0], "tensor handles");
  for (uint32_t i = 0; i < n; i++) freeValue(env, element(env, argv[0], i));
  return undef(env);
  TL_CATCH
}

TL_FN(isAlive) {  // any value: true only for a live handle of this thread
  TL_ARGS(1);
  uint32_t slot = 0;
  return boolean(env, classify(env, argv[0], &slot) == HandleKind::Live);
}

// replaceData(dst, src): dst's tensor takes src's data (dtype, shape, storage) in place — PyTorch's
// `param.data = src` (Variable::set_data). The libtorch tensor keeps its identity, so optimisers and every other
// holder of it see the new data; requires_grad and autograd metadata stay.
TL_FN(replaceData) {
  TL_ARGS(2);
  TL_TRY uint32_t slot = 0;
  if (classify(env, argv[0], &slot) != HandleKind::Live) tensorAt(env, argv[0]);  // throws the right error
  at::Tensor src = T(1);
  auto& tb = table();
  at::Tensor& dst = tb.slots[slot];
  if (src.is_same(dst)) return undef(env);
  dst.set_data(src.detach());
  const int64_t nb = dst.has_storage() ? static_cast<int64_t>(dst.numel() * dst.element_size()) : 0;
  tb.pendingBytes += nb - tb.bytes[slot];
  tb.liveBytes += nb - tb.bytes[slot];
  tb.bytes[slot] = nb;
  return undef(env);
  TL_CATCH
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
  TL_TRY const uint64_t seed = getU64(env, argv[0]);
  auto& g = generators();
  g.push_back(std::make_unique<at::Generator>(at::detail::createCPUGenerator(seed)));
  return num(env, g.size() - 1);
  TL_CATCH
}
TL_FN(generatorSeed) {
  TL_ARGS(2);
  TL_TRY if (isNullish(env, argv[0])) throw JsError("expected a generator id");
  auto g = genOf(env, argv[0]);
  const uint64_t seed = getU64(env, argv[1]);
  std::lock_guard<std::mutex> lock(g->mutex());
  g->set_current_seed(seed);
  return undef(env);
  TL_CATCH
}
TL_FN(manualSeed) {
  TL_ARGS(1);
  TL_TRY const uint64_t seed = getU64(env, argv[0]);
  auto g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed(seed);
  return undef(env);
  TL_CATCH
}

/** Byte length and data of a TypedArray (any element type). */
static size_t typedArrayBytes(napi_env env, napi_value v, void** data) {
  napi_typedarray_type tt;
  size_t count = 0, off = 0;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &tt, &count, data, &ab, &off) != napi_ok) throw JsError("unreadable TypedArray");
  static const size_t sizes[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};  // napi_int8_array … napi_biguint64_array
  const size_t i = static_cast<size_t>(tt);
  if (i >= sizeof sizes / sizeof sizes[0]) throw JsError("unsupported TypedArray type");
  return count * sizes[i];
}

/** Bytes of a tensor of `shape` and `dt`, refusing negative sizes and overflow. */
static size_t byteSize(const std::vector<int64_t>& shape, at::ScalarType dt) {
  uint64_t n = c10::elementSize(dt);
  for (auto s : shape) {
    if (s < 0) throw JsError("negative dimension " + std::to_string(s));
    if (s != 0 && n > UINT64_MAX / static_cast<uint64_t>(s)) throw JsError("tensor size overflows");
    n *= static_cast<uint64_t>(s);
  }
  return static_cast<size_t>(n);
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
  if (isBuf) {
    if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) throw JsError("fromBuffer: unreadable Buffer");
  } else if (isTa) {
    len = typedArrayBytes(env, argv[0], &data);
  } else if (isAb) {
    if (napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok)
      throw JsError("fromBuffer: unreadable ArrayBuffer");
  } else {
    throw JsError("fromBuffer: expected a TypedArray, Buffer or ArrayBuffer");
  }
  auto dt = dtypeOf(I(1));
  auto shape = IL(2);
  const size_t need = byteSize(shape, dt);
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
  void* data = nullptr;
  size_t len = 0;
  bool isBuf = false, isTa = false;
  napi_is_buffer(env, argv[1], &isBuf);
  napi_is_typedarray(env, argv[1], &isTa);
  if (isBuf) {
    if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) throw JsError("copyInto: unreadable Buffer");
  } else if (isTa) {
    len = typedArrayBytes(env, argv[1], &data);
  } else {
    throw JsError("copyInto: expected a TypedArray or Buffer as the destination");
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
static std::string shapeStr(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); i++) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// setGrad(t, g | null): as PyTorch's `t.grad = g`, which refuses a gradient of another shape (even a broadcastable
// one: the optimiser would apply it as is), dtype or device.
TL_FN(setGrad) {
  TL_ARGS(2);
  TL_TRY at::Tensor t = T(0);
  if (isNullish(env, argv[1])) {
    t.mutable_grad().reset();
    return undef(env);
  }
  at::Tensor g = T(1);
  if (!g.sizes().equals(t.sizes()))
    throw JsError("assigned grad has shape " + shapeStr(g.sizes()) + " but the tensor has shape " +
                  shapeStr(t.sizes()));
  if (g.scalar_type() != t.scalar_type())
    throw JsError(std::string("assigned grad has dtype ") + c10::toString(g.scalar_type()) +
                  " but the tensor has dtype " + c10::toString(t.scalar_type()));
  if (g.device() != t.device())
    throw JsError("assigned grad is on " + g.device().str() + " but the tensor is on " + t.device().str());
  if (g.layout() != t.layout()) throw JsError("assigned grad has a different layout than the tensor");
  t.mutable_grad() = g.detach();
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
  TL_TRY const int64_t n64 = I(0);
  if (n64 < 1 || n64 > 65536) throw JsError("setNumThreads: expected a positive thread count, got " + std::to_string(n64));
  const int n = static_cast<int>(n64);
  at::set_num_threads(n);
  tl::setPoolThreads(n);
  if (auto f = reinterpret_cast<openblas_set_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
  return undef(env);
  TL_CATCH
}
TL_FN(setDecodeThreads) {
  TL_ARGS(1);
  TL_TRY const int64_t n64 = I(0);
  if (n64 < 1 || n64 > 65536) throw JsError("setDecodeThreads: expected a positive thread count, got " + std::to_string(n64));
  tl::setPoolThreads(static_cast<int>(n64));
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
  TL_TRY const int64_t n = I(0);
  if (n < 1 || n > 65536) throw JsError("setNumInteropThreads: expected a positive thread count, got " + std::to_string(n));
  at::set_num_interop_threads(static_cast<int>(n));
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
  R(replaceData);
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
  R(setDecodeThreads);
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
  tl::registerKernels(env, exports);
  tl::registerFused(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
