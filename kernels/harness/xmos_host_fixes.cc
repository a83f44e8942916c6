/* A fix for one function of the xmos-ai-tools host runtime (xinterpreters/libs/linux/xtflm_python.so, 1.4.2);
   it is linked into the host harness only. No other TFLite Micro build needs it.

   The bug: that library's MicroResourceVariables::Allocate takes the size of the variable from
   EvalTensorBytes((const TfLiteEvalTensor*)tensor), which is right only where TfLiteTensor starts like
   TfLiteEvalTensor (builds with TF_LITE_STATIC_MEMORY). The shared library is built without it, so the call
   reads the data pointer as the shape and ASSIGN_VARIABLE's Prepare crashes: no model with resource variables
   (xstream's `variable` form) runs. Calls inside the library go through its PLT, so this definition in the
   executable replaces the library's (ELF symbol interposition) with TFLite Micro's own behaviour: the size is
   tensor->bytes, and the buffer starts at the tensor's zero point. */
#include <cstring>

#include "tensorflow/lite/c/common.h"
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

}  // namespace XSTREAM_TFLM_NAMESPACE
