/* An op resolver for the host harness with the two calls of tflite::MicroMutableOpResolver that matter here:
   AddBuiltin-style registration of the builtins xstream models use, and AddCustom(name, registration).

   Why not MicroMutableOpResolver itself: its header includes the reference kernels, which need gemmlowp's
   fixedpoint headers, and the xmos-ai-tools runtime does not ship them. On a TFLM build that has them, use
   MicroMutableOpResolver<N> and the same AddCustom / xstream::AddRingBuffer line. */
#ifndef XSTREAM_HARNESS_HOST_OP_RESOLVER_H_
#define XSTREAM_HARNESS_HOST_OP_RESOLVER_H_

#include <cstring>

#include "tensorflow/lite/core/api/flatbuffer_conversions.h"
#include "tensorflow/lite/micro/kernels/micro_ops.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef XSTREAM_TFLM_NAMESPACE
#define XSTREAM_TFLM_NAMESPACE tflite
#endif

namespace xstream_host {

namespace tflm = XSTREAM_TFLM_NAMESPACE;

template <unsigned kCapacity>
class HostOpResolver : public tflm::MicroOpResolver {
 public:
  TfLiteStatus AddBuiltin(tflm::BuiltinOperator op, const TFLMRegistration& registration,
                          tflm::TfLiteBridgeBuiltinParseFunction parser) {
    if (count_ >= kCapacity || FindOp(op) != nullptr) return kTfLiteError;
    entries_[count_].registration = registration;
    entries_[count_].registration.builtin_code = op;
    entries_[count_].registration.custom_name = nullptr;
    entries_[count_].parser = parser;
    ++count_;
    return kTfLiteOk;
  }

  TfLiteStatus AddCustom(const char* name, const TFLMRegistration* registration) {
    if (count_ >= kCapacity || registration == nullptr || FindOp(name) != nullptr) return kTfLiteError;
    entries_[count_].registration = *registration;
    entries_[count_].registration.builtin_code = tflm::BuiltinOperator_CUSTOM;
    entries_[count_].registration.custom_name = name;
    entries_[count_].parser = nullptr;
    ++count_;
    return kTfLiteOk;
  }

  const TFLMRegistration* FindOp(tflm::BuiltinOperator op) const override {
    if (op == tflm::BuiltinOperator_CUSTOM) return nullptr;
    for (unsigned i = 0; i < count_; ++i) {
      if (entries_[i].registration.builtin_code == op) return &entries_[i].registration;
    }
    return nullptr;
  }

  const TFLMRegistration* FindOp(const char* name) const override {
    for (unsigned i = 0; i < count_; ++i) {
      const TFLMRegistration& r = entries_[i].registration;
      if (r.builtin_code == tflm::BuiltinOperator_CUSTOM && strcmp(r.custom_name, name) == 0) return &r;
    }
    return nullptr;
  }

  tflm::TfLiteBridgeBuiltinParseFunction GetOpDataParser(tflm::BuiltinOperator op) const override {
    for (unsigned i = 0; i < count_; ++i) {
      if (entries_[i].registration.builtin_code == op) return entries_[i].parser;
    }
    return nullptr;
  }

  unsigned size() const { return count_; }

 private:
  struct Entry {
    TFLMRegistration registration;
    tflm::TfLiteBridgeBuiltinParseFunction parser;
  };
  Entry entries_[kCapacity] = {};
  unsigned count_ = 0;
};

// The builtins that xstream's converter emits or that time-series models in its zoo use, in every state form
// (ring-buffer, variable, external, circular-buffer), plus a few common neighbours. Returns false if one
// registration failed (capacity).
template <typename Resolver>
bool AddXstreamBuiltins(Resolver& r) {
  using namespace tflm;
  bool ok = true;
  auto add = [&](BuiltinOperator op, const TFLMRegistration& reg, TfLiteBridgeBuiltinParseFunction parser) {
    ok = r.AddBuiltin(op, reg, parser) == kTfLiteOk && ok;
  };
  add(BuiltinOperator_ADD, Register_ADD(), ParseAdd);
  add(BuiltinOperator_SUB, Register_SUB(), ParseSub);
  add(BuiltinOperator_MUL, Register_MUL(), ParseMul);
  add(BuiltinOperator_MAXIMUM, Register_MAXIMUM(), ParseMaximum);
  add(BuiltinOperator_MINIMUM, Register_MINIMUM(), ParseMinimum);
  add(BuiltinOperator_CONV_2D, Register_CONV_2D(), ParseConv2D);
  add(BuiltinOperator_DEPTHWISE_CONV_2D, Register_DEPTHWISE_CONV_2D(), ParseDepthwiseConv2D);
  add(BuiltinOperator_FULLY_CONNECTED, Register_FULLY_CONNECTED(), ParseFullyConnected);
  add(BuiltinOperator_AVERAGE_POOL_2D, Register_AVERAGE_POOL_2D(), ParsePool);
  add(BuiltinOperator_MAX_POOL_2D, Register_MAX_POOL_2D(), ParsePool);
  add(BuiltinOperator_MEAN, Register_MEAN(), ParseReducer);
  add(BuiltinOperator_SUM, Register_SUM(), ParseReducer);
  add(BuiltinOperator_REDUCE_MAX, Register_REDUCE_MAX(), ParseReducer);
  add(BuiltinOperator_RESHAPE, Register_RESHAPE(), ParseReshape);
  add(BuiltinOperator_EXPAND_DIMS, Register_EXPAND_DIMS(), ParseExpandDims);
  add(BuiltinOperator_SQUEEZE, Register_SQUEEZE(), ParseSqueeze);
  add(BuiltinOperator_SHAPE, Register_SHAPE(), ParseShape);
  add(BuiltinOperator_PACK, Register_PACK(), ParsePack);
  add(BuiltinOperator_UNPACK, Register_UNPACK(), ParseUnpack);
  add(BuiltinOperator_PAD, Register_PAD(), ParsePad);
  add(BuiltinOperator_PADV2, Register_PADV2(), ParsePadV2);
  add(BuiltinOperator_STRIDED_SLICE, Register_STRIDED_SLICE(), ParseStridedSlice);
  add(BuiltinOperator_SLICE, Register_SLICE(), ParseSlice);
  add(BuiltinOperator_CONCATENATION, Register_CONCATENATION(), ParseConcatenation);
  add(BuiltinOperator_SPLIT, Register_SPLIT(), ParseSplit);
  add(BuiltinOperator_SPLIT_V, Register_SPLIT_V(), ParseSplitV);
  add(BuiltinOperator_GATHER, Register_GATHER(), ParseGather);
  add(BuiltinOperator_TRANSPOSE, Register_TRANSPOSE(), ParseTranspose);
  add(BuiltinOperator_SPACE_TO_BATCH_ND, Register_SPACE_TO_BATCH_ND(), ParseSpaceToBatchNd);
  add(BuiltinOperator_BATCH_TO_SPACE_ND, Register_BATCH_TO_SPACE_ND(), ParseBatchToSpaceNd);
  add(BuiltinOperator_RELU, Register_RELU(), ParseRelu);
  add(BuiltinOperator_RELU6, Register_RELU6(), ParseRelu6);
  add(BuiltinOperator_LEAKY_RELU, Register_LEAKY_RELU(), ParseLeakyRelu);
  add(BuiltinOperator_HARD_SWISH, Register_HARD_SWISH(), ParseHardSwish);
  add(BuiltinOperator_LOGISTIC, Register_LOGISTIC(), ParseLogistic);
  add(BuiltinOperator_TANH, Register_TANH(), ParseTanh);
  add(BuiltinOperator_SOFTMAX, Register_SOFTMAX(), ParseSoftmax);
  add(BuiltinOperator_QUANTIZE, Register_QUANTIZE(), ParseQuantize);
  add(BuiltinOperator_DEQUANTIZE, Register_DEQUANTIZE(), ParseDequantize);
  add(BuiltinOperator_CAST, Register_CAST(), ParseCast);
  // Common in real time-series models (normalisation, attention-like gating, recurrent layers, front ends);
  // TFLite Micro has no REDUCE_PROD kernel.
  add(BuiltinOperator_RSQRT, Register_RSQRT(), ParseRsqrt);
  add(BuiltinOperator_SQRT, Register_SQRT(), ParseSqrt);
  add(BuiltinOperator_NEG, Register_NEG(), ParseNeg);
  add(BuiltinOperator_ABS, Register_ABS(), ParseAbs);
  add(BuiltinOperator_EXP, Register_EXP(), ParseExp);
  add(BuiltinOperator_LOG, Register_LOG(), ParseLog);
  add(BuiltinOperator_DIV, Register_DIV(), ParseDiv);
  add(BuiltinOperator_SQUARE, Register_SQUARE(), ParseSquare);
  add(BuiltinOperator_SQUARED_DIFFERENCE, Register_SQUARED_DIFFERENCE(), ParseSquaredDifference);
  add(BuiltinOperator_PRELU, Register_PRELU(), ParsePrelu);
  add(BuiltinOperator_ELU, Register_ELU(), ParseElu);
  add(BuiltinOperator_LOG_SOFTMAX, Register_LOG_SOFTMAX(), ParseLogSoftmax);
  add(BuiltinOperator_MIRROR_PAD, Register_MIRROR_PAD(), ParseMirrorPad);
  add(BuiltinOperator_SELECT_V2, Register_SELECT_V2(), ParseSelectV2);
  add(BuiltinOperator_ARG_MAX, Register_ARG_MAX(), ParseArgMax);
  add(BuiltinOperator_TRANSPOSE_CONV, Register_TRANSPOSE_CONV(), ParseTransposeConv);
  add(BuiltinOperator_SVDF, Register_SVDF(), ParseSvdf);
  add(BuiltinOperator_UNIDIRECTIONAL_SEQUENCE_LSTM, Register_UNIDIRECTIONAL_SEQUENCE_LSTM(),
      ParseUnidirectionalSequenceLSTM);
  // State in the `variable` form: resource variables, initialised by a CALL_ONCE subgraph.
  add(BuiltinOperator_VAR_HANDLE, Register_VAR_HANDLE(), ParseVarHandle);
  add(BuiltinOperator_READ_VARIABLE, Register_READ_VARIABLE(), ParseReadVariable);
  add(BuiltinOperator_ASSIGN_VARIABLE, Register_ASSIGN_VARIABLE(), ParseAssignVariable);
  add(BuiltinOperator_CALL_ONCE, Register_CALL_ONCE(), ParseCallOnce);
  return ok;
}

}  // namespace xstream_host

#endif  // XSTREAM_HARNESS_HOST_OP_RESOLVER_H_
