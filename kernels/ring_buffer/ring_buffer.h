/* The RING_BUFFER custom op of xstream for TensorFlow Lite Micro (spec: docs/RING_BUFFER.md).

   Register it with one line, on any resolver that has AddCustom(name, registration):

       xstream::AddRingBuffer(op_resolver);      // e.g. tflite::MicroMutableOpResolver<N>

   which is the same as
       op_resolver.AddCustom("RING_BUFFER", xstream::Register_RING_BUFFER());

   Start of a new utterance: xstream::ResetRingBuffers(interpreter) returns the RING_BUFFER states of that
   interpreter to the zero point. interpreter.Reset() does it too (it calls every kernel's reset hook), and
   also resets everything else that carries state (variable tensors, resource variables, CIRCULAR_BUFFER).

   TFLite Micro's namespace is `tflite` upstream; builds whose TFLM lives in another namespace (the xmos-ai-tools
   runtime uses `tflite_micro`) compile this op with -DXSTREAM_TFLM_NAMESPACE=that_namespace. */
#ifndef XSTREAM_KERNELS_RING_BUFFER_H_
#define XSTREAM_KERNELS_RING_BUFFER_H_

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_common.h"

#ifndef XSTREAM_TFLM_NAMESPACE
#define XSTREAM_TFLM_NAMESPACE tflite
#endif

namespace XSTREAM_TFLM_NAMESPACE {
class MicroInterpreter;
}  // namespace XSTREAM_TFLM_NAMESPACE

namespace xstream {

// The custom code the converter writes in the model's operator codes.
constexpr char kRingBufferCustomCode[] = "RING_BUFFER";

// The kernel: Init parses the options, Prepare checks shapes and allocates the state in a persistent buffer,
// Invoke moves bytes, the reset hook refills the state with the zero point, Free forgets the op.
TFLMRegistration* Register_RING_BUFFER();

// Adds RING_BUFFER to `resolver` (anything with AddCustom(const char*, const TFLMRegistration*)).
template <typename Resolver>
TfLiteStatus AddRingBuffer(Resolver& resolver) {
  return resolver.AddCustom(kRingBufferCustomCode, Register_RING_BUFFER());
}

// Returns every RING_BUFFER state of `interpreter` to its initial value (the zero point of its input, 0 for
// float): the start of a new utterance. Returns how many ring buffers were reset.
int ResetRingBuffers(const XSTREAM_TFLM_NAMESPACE::MicroInterpreter& interpreter);

// The same for every RING_BUFFER of every live interpreter (for builds without a MicroInterpreter object).
int ResetAllRingBuffers();

}  // namespace xstream

#endif  // XSTREAM_KERNELS_RING_BUFFER_H_
