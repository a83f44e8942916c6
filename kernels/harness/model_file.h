// Reading a .tflite for the harnesses: the file's bytes, and an operator code's builtin operator.
#ifndef XSTREAM_KERNELS_HARNESS_MODEL_FILE_H_
#define XSTREAM_KERNELS_HARNESS_MODEL_FILE_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tensorflow/lite/schema/schema_generated.h"

#ifndef XSTREAM_TFLM_NAMESPACE
#define XSTREAM_TFLM_NAMESPACE tflite
#endif

namespace xstream_harness {

inline bool ReadFile(const std::string& path, std::vector<uint8_t>* out) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  uint8_t chunk[1 << 16];
  size_t got;
  while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) out->insert(out->end(), chunk, chunk + got);
  fclose(f);
  return true;
}

// Newer converters write builtin_code; older ones only deprecated_builtin_code (int8, saturated at 127).
inline XSTREAM_TFLM_NAMESPACE::BuiltinOperator BuiltinCode(const XSTREAM_TFLM_NAMESPACE::OperatorCode* code) {
  return static_cast<XSTREAM_TFLM_NAMESPACE::BuiltinOperator>(
      code->builtin_code() > code->deprecated_builtin_code() ? code->builtin_code()
                                                             : code->deprecated_builtin_code());
}

}  // namespace xstream_harness

#endif  // XSTREAM_KERNELS_HARNESS_MODEL_FILE_H_
