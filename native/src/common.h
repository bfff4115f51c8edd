// Shared glue for the tinyllava Node-API addon: the tensor handle table and argument helpers.
// Tensors live in a per-JS-thread table; JS holds a number (an integer below 2^53) that packs
//   generation (21 bits) · 2^32 + table id (8 bits) · 2^24 + slot (24 bits),
// so a stale handle (used after dispose) is detected instead of touching a reused slot, and a handle from another JS
// thread's table (a worker's) is recognised as such. Every binding accepts any JS value: bad arguments throw JS errors.
#pragma once
#define NAPI_VERSION 8
#include <node_api.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tl {

struct JsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr uint64_t kSlotBits = 24, kTableBits = 8, kGenBits = 21;
constexpr uint32_t kSlotMask = (1u << kSlotBits) - 1, kTableMask = (1u << kTableBits) - 1, kGenMask = (1u << kGenBits) - 1;

struct HandleTable {
  HandleTable();
  ~HandleTable();
  uint32_t id = 0;  // 1..255; 0 when every id is taken (too many JS threads): wrap() then refuses
  std::vector<at::Tensor> slots;
  std::vector<uint32_t> gens;
  std::vector<int64_t> bytes;
  std::vector<uint32_t> freeList;
  int64_t pendingBytes = 0;  // not yet reported to V8
  int64_t liveBytes = 0;
  size_t live = 0;
};
HandleTable& table();

/** What a JS value is as a tensor handle of this thread. */
enum class HandleKind { Live, Stale, OtherThread, Invalid };
HandleKind classify(napi_env env, napi_value v, uint32_t* slot);

napi_value wrap(napi_env env, at::Tensor t);
at::Tensor& tensorAt(napi_env env, napi_value v);
bool isNullish(napi_env env, napi_value v);
at::Tensor optTensor(napi_env env, napi_value v);  // undefined tensor for null/undefined
void flushExternalMemory(napi_env env, bool force);

double getNum(napi_env env, napi_value v);
int64_t getInt(napi_env env, napi_value v);        // a finite integer in int64 range, else a JS error
uint64_t getU64(napi_env env, napi_value v);       // a finite integer in [0, 2^64), else a JS error
uint32_t arrayLength(napi_env env, napi_value v, const char* what);  // throws unless v is an array
napi_value element(napi_env env, napi_value arr, uint32_t i);
napi_value property(napi_env env, napi_value obj, const char* name);  // undefined when absent; throws unless obj is an object
bool getBool(napi_env env, napi_value v);
std::string getStr(napi_env env, napi_value v);
std::vector<int64_t> getIntList(napi_env env, napi_value v);
std::vector<at::Tensor> getTensorList(napi_env env, napi_value v);
at::ScalarType dtypeOf(int64_t code);
int64_t dtypeCode(at::ScalarType t);
at::Device deviceOf(napi_env env, napi_value v);
c10::optional<at::Generator> genOf(napi_env env, napi_value v);  // null -> default generator

napi_value num(napi_env env, double d);
napi_value boolean(napi_env env, bool b);
napi_value str(napi_env env, const std::string& s);
napi_value undef(napi_env env);
napi_value tensorArray(napi_env env, const std::vector<at::Tensor>& ts);
napi_value intArray(napi_env env, at::IntArrayRef xs);
void throwJs(napi_env env, const char* msg);

void defineFn(napi_env env, napi_value exports, const char* name, napi_callback cb);

void registerCore(napi_env env, napi_value exports);
void registerOps(napi_env env, napi_value exports);
void registerOptim(napi_env env, napi_value exports);
void registerKernels(napi_env env, napi_value exports);  // kernels.cpp: fused decode products and attention
void registerFused(napi_env env, napi_value exports);    // fused.cpp: RMSNorm and rotary embeddings for inference
void registerReference(napi_env env, napi_value exports);  // also aligns kernel choice: call before any op
void installAllocator();
void allocatorStats(int64_t* allocated, int64_t* cached, int64_t* peak, int64_t* blocks);
void allocatorEmptyCache();

}  // namespace tl

#define TL_FN(name) static napi_value name(napi_env env, napi_callback_info info)
#define TL_ARGS(n)                                                    \
  size_t argc = n;                                                    \
  napi_value argv[n > 0 ? n : 1];                                     \
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);         \
  for (size_t i_ = argc; i_ < (n); i_++) napi_get_undefined(env, &argv[i_]);
#define TL_TRY try {
#define TL_CATCH                                               \
  }                                                            \
  catch (const c10::Error& e) {                                \
    tl::throwJs(env, e.what_without_backtrace());              \
    return nullptr;                                            \
  }                                                            \
  catch (const std::exception& e) {                            \
    tl::throwJs(env, e.what());                                \
    return nullptr;                                            \
  }
#define T(i) tl::tensorAt(env, argv[i])
#define OT(i) tl::optTensor(env, argv[i])
#define I(i) tl::getInt(env, argv[i])
#define D(i) tl::getNum(env, argv[i])
#define B(i) tl::getBool(env, argv[i])
#define IL(i) tl::getIntList(env, argv[i])
#define RET(t) return tl::wrap(env, (t))
