/* Fixes for two functions of the xmos-ai-tools host runtime (xinterpreters/libs/linux/xtflm_python.so, 1.4.2);
   they are linked into the host harness only. No other TFLite Micro build needs them. Calls inside the library
   go through its PLT, so a definition in the executable replaces the library's (ELF symbol interposition).

   1. Resource variables. That library's MicroResourceVariables::Allocate takes the size of the variable from
   EvalTensorBytes((const TfLiteEvalTensor*)tensor), which is right only where TfLiteTensor starts like
   TfLiteEvalTensor (builds with TF_LITE_STATIC_MEMORY). The shared library is built without it, so the call
   reads the data pointer as the shape and ASSIGN_VARIABLE's Prepare crashes: no model with resource variables
   (xstream's `variable` form) runs. The replacement does what TFLite Micro does: the size is tensor->bytes, and
   the buffer starts at the tensor's zero point.

   2. Per-channel FULLY_CONNECTED (below). */
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"

namespace XSTREAM_TFLM_NAMESPACE {

TfLiteStatus MicroResourceVariables::Allocate(int id, TfLiteContext* context, const TfLiteTensor* tensor) {
  if (id < 0 || id >= num_resource_variables_) {
    MicroPrintf("resource variable %d does not exist", id);
    return kTfLiteError;
  }
  MicroResourceVariable& variable = resource_variables_[id];
  if (variable.resource_buffer != nullptr) return kTfLiteOk;
  variable.bytes = tensor->bytes;
  variable.resource_buffer = context->AllocatePersistentBuffer(context, tensor->bytes);
  if (variable.resource_buffer == nullptr) {
    MicroPrintf("cannot allocate %d bytes for resource variable %d", static_cast<int>(tensor->bytes), id);
    return kTfLiteError;
  }
  // The initial value is the zero point (ResetAll writes default_value again, a byte, as TFLite Micro does).
  variable.default_value = 0;
  if (tensor->quantization.type == kTfLiteAffineQuantization && tensor->quantization.params != nullptr) {
    const auto* q = static_cast<const TfLiteAffineQuantization*>(tensor->quantization.params);
    if (q->zero_point != nullptr && q->zero_point->size > 0)
      variable.default_value = static_cast<int8_t>(q->zero_point->data[0]);
  }
  memset(variable.resource_buffer, variable.default_value, variable.bytes);
  return kTfLiteOk;
}

/* A second fix: per-channel FULLY_CONNECTED. That library's FULLY_CONNECTED predates per-channel weights
   (tflite-micro PR 2673, September 2024): it requantizes every output channel with the first channel's scale,
   without an error. TensorFlow quantizes a Dense layer per channel since 2.17, so most int8 models' heads were
   off by an LSB or more in the harness. This Register_FULLY_CONNECTED replaces the library's (the same symbol
   interposition) and wraps it: the library's init and prepare run as before; where the weights are int8 and per
   channel, prepare also allocates and fills one multiplier and shift per output channel (as TFLite Micro from
   2024-09 does, from the arena) and invoke computes as TFLite Micro's FullyConnectedPerChannel; everything else
   runs the library's invoke. The per-channel arrays are found by node, in host memory. */
namespace {

// TFLite's requantization (common.h, double rounding; that header needs gemmlowp, which the runtime lacks).
int32_t RoundingHighMul(int32_t a, int32_t b) {
  if (a == b && a == std::numeric_limits<int32_t>::min()) return std::numeric_limits<int32_t>::max();
  const int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return static_cast<int32_t>((ab + nudge) / (int64_t{1} << 31));
}

int32_t RoundingShiftRight(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t Requantize(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return RoundingShiftRight(RoundingHighMul(static_cast<int32_t>(x * (int64_t{1} << left)), multiplier), right);
}

struct PerChannel {
  int32_t* multiplier;
  int* shift;
  int channels;
};

std::unordered_map<const TfLiteNode*, PerChannel>& PerChannelNodes() {
  static std::unordered_map<const TfLiteNode*, PerChannel> nodes;
  return nodes;
}

const TFLMRegistration& LibraryFullyConnected() {
  static const TFLMRegistration registration = [] {
    using Register = TFLMRegistration (*)();
    // The next definition after this executable's: the library's own.
    auto next = reinterpret_cast<Register>(dlsym(RTLD_NEXT, "_ZN12tflite_micro24Register_FULLY_CONNECTEDEv"));
    if (next == nullptr) {  // not the xmos-ai-tools library: this file is for that library only
      fprintf(stderr, "xmos_host_fixes: the runtime library has no Register_FULLY_CONNECTED to wrap\n");
      abort();
    }
    return next();
  }();
  return registration;
}

void* FcInit(TfLiteContext* context, const char* buffer, size_t length) {
  return LibraryFullyConnected().init(context, buffer, length);
}

TfLiteStatus FcPrepare(TfLiteContext* context, TfLiteNode* node) {
  PerChannelNodes().erase(node);  // a node of an earlier interpreter may have had this address
  const TfLiteStatus status = LibraryFullyConnected().prepare(context, node);
  if (status != kTfLiteOk) return status;
  MicroContext* micro_context = GetMicroContext(context);
  TfLiteTensor* input = micro_context->AllocateTempInputTensor(node, 0);
  TfLiteTensor* filter = micro_context->AllocateTempInputTensor(node, 1);
  TfLiteTensor* output = micro_context->AllocateTempOutputTensor(node, 0);
  TfLiteStatus result = kTfLiteOk;
  if (input != nullptr && filter != nullptr && output != nullptr && input->type == kTfLiteInt8 &&
      filter->type == kTfLiteInt8 && output->type == kTfLiteInt8 &&
      filter->quantization.type == kTfLiteAffineQuantization && filter->quantization.params != nullptr) {
    const auto* q = static_cast<const TfLiteAffineQuantization*>(filter->quantization.params);
    const int channels = q->scale != nullptr ? q->scale->size : 0;
    if (channels > 1) {
      PerChannel pc{static_cast<int32_t*>(context->AllocatePersistentBuffer(context, channels * sizeof(int32_t))),
                    static_cast<int*>(context->AllocatePersistentBuffer(context, channels * sizeof(int))),
                    channels};
      TfLiteTensor* bias = micro_context->AllocateTempInputTensor(node, 2);  // nullptr without a bias
      const auto* params = static_cast<const TfLiteFullyConnectedParams*>(node->builtin_data);
      int32_t multiplier = 0, activation_min = 0, activation_max = 0;
      int shift = 0;
      // The library's own per-channel multipliers, as its CONV_2D and TFLite Micro's FULLY_CONNECTED compute them.
      result = pc.multiplier == nullptr || pc.shift == nullptr || params == nullptr ? kTfLiteError :
          PopulateConvolutionQuantizationParams(context, input, filter, bias, output, params->activation,
                                                &multiplier, &shift, &activation_min, &activation_max,
                                                pc.multiplier, pc.shift, channels);
      if (bias != nullptr) micro_context->DeallocateTempTfLiteTensor(bias);
      if (result == kTfLiteOk) PerChannelNodes()[node] = pc;
    }
  }
  if (input != nullptr) micro_context->DeallocateTempTfLiteTensor(input);
  if (filter != nullptr) micro_context->DeallocateTempTfLiteTensor(filter);
  if (output != nullptr) micro_context->DeallocateTempTfLiteTensor(output);
  return result;
}

TfLiteStatus FcInvoke(TfLiteContext* context, TfLiteNode* node) {
  const auto found = PerChannelNodes().find(node);
  if (found == PerChannelNodes().end()) return LibraryFullyConnected().invoke(context, node);
  const PerChannel& pc = found->second;
  const auto* data = static_cast<const OpDataFullyConnected*>(node->user_data);
  const TfLiteEvalTensor* input = micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* filter = micro::GetEvalInput(context, node, 1);
  const TfLiteEvalTensor* bias = node->inputs->size > 2 ? micro::GetEvalInput(context, node, 2) : nullptr;
  TfLiteEvalTensor* output = micro::GetEvalOutput(context, node, 0);
  const RuntimeShape filter_shape = micro::GetTensorShape(filter);
  const RuntimeShape output_shape = micro::GetTensorShape(output);
  const int depth = filter_shape.Dims(filter_shape.DimensionsCount() - 1);
  const int outputs = output_shape.Dims(output_shape.DimensionsCount() - 1);
  if (outputs != pc.channels) return kTfLiteError;
  const int batches = FlatSizeSkipDim(output_shape, output_shape.DimensionsCount() - 1);
  const int8_t* x = micro::GetTensorData<int8_t>(input);
  const int8_t* w = micro::GetTensorData<int8_t>(filter);
  const int32_t* b = bias != nullptr ? micro::GetTensorData<int32_t>(bias) : nullptr;
  int8_t* y = micro::GetTensorData<int8_t>(output);
  const int32_t input_offset = -data->input_zero_point;
  for (int n = 0; n < batches; ++n) {
    for (int c = 0; c < outputs; ++c) {
      int32_t acc = 0;
      for (int d = 0; d < depth; ++d) acc += w[c * depth + d] * (x[n * depth + d] + input_offset);
      if (b != nullptr) acc += b[c];
      acc = Requantize(acc, pc.multiplier[c], pc.shift[c]) + data->output_zero_point;
      acc = std::min(std::max(acc, data->output_activation_min), data->output_activation_max);
      y[n * outputs + c] = static_cast<int8_t>(acc);
    }
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_FULLY_CONNECTED() {
  TFLMRegistration r = LibraryFullyConnected();
  r.init = FcInit;
  r.prepare = FcPrepare;
  r.invoke = FcInvoke;
  return r;
}

}  // namespace XSTREAM_TFLM_NAMESPACE
