// Dtype names and byte sizes of TfLiteTensors, as the harnesses' pipe protocol writes them.
#ifndef XSTREAM_KERNELS_HARNESS_TENSOR_BYTES_H_
#define XSTREAM_KERNELS_HARNESS_TENSOR_BYTES_H_

#include <cstddef>

#include "tensorflow/lite/c/common.h"

namespace xstream_harness {

inline const char* DtypeName(TfLiteType t) {
  switch (t) {
    case kTfLiteInt8: return "int8";
    case kTfLiteUInt8: return "uint8";
    case kTfLiteInt16: return "int16";
    case kTfLiteInt32: return "int32";
    case kTfLiteInt64: return "int64";
    case kTfLiteFloat32: return "float32";
    case kTfLiteFloat64: return "float64";
    case kTfLiteBool: return "bool";
    default: return "unknown";
  }
}

// Bytes of the tensor's data; 0 for a type the protocol does not carry.
inline size_t TensorBytes(const TfLiteTensor* t) {
  size_t n = 1;
  for (int i = 0; i < t->dims->size; ++i) n *= static_cast<size_t>(t->dims->data[i]);
  switch (t->type) {
    case kTfLiteInt8: case kTfLiteUInt8: case kTfLiteBool: return n;
    case kTfLiteInt16: return 2 * n;
    case kTfLiteInt32: case kTfLiteFloat32: return 4 * n;
    case kTfLiteInt64: case kTfLiteFloat64: return 8 * n;
    default: return 0;
  }
}

}  // namespace xstream_harness

#endif  // XSTREAM_KERNELS_HARNESS_TENSOR_BYTES_H_
