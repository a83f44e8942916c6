/* RING_BUFFER for TensorFlow Lite Micro, as docs/RING_BUFFER.md specifies it.

   y = the last `frames` frames of concat(state, x) along `axis`; state = the last max(frames - n, 0) frames of y.
   The op only moves bytes, so one code path serves every fixed-size type (int8, int16, float32, ...). The state
   is kept in time order (oldest first) in a persistent buffer allocated in Prepare, never in the activation
   arena, and starts at the zero point of x. With the option "in_place" (y is then a variable tensor, which
   TFLite Micro allocates outside the activation plan), y itself is the state: each invoke shifts it by n
   frames and appends x, and no other buffer is kept (docs/RING_BUFFER.md). */
#include "ring_buffer.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "flatbuffers/flexbuffers.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"
#ifndef NO_INTERPRETER
#include "tensorflow/lite/micro/micro_interpreter.h"
#endif

namespace tflm = XSTREAM_TFLM_NAMESPACE;

namespace xstream {
namespace {

struct OpData {  // pointers first, then 32-bit fields: 80 bytes on a 64-bit host, 60 on a 32-bit MCU
  uint8_t* state;        // outer x keep x frame_bytes, oldest frame first (in place: y's data)
  // The interpreter's context, to find this op again in ResetRingBuffers(interpreter).
  const TfLiteContext* context;
  OpData* next;          // the list of live ring buffers
  const OpData* self;    // == this while listed: a check against entries whose memory was reused
  // Options (from the flexbuffer map {"axis": int, "frames": int}).
  int axis;
  int frames;
  // Fixed in Prepare from the shape of x.
  int n;                 // frames of x per invoke
  int keep;              // frames of state: max(frames - n, 0)
  uint32_t outer;        // product of the dimensions before axis
  uint32_t frame_bytes;  // bytes of one frame: product of the dimensions after axis, times the element size
  uint32_t state_bytes;
  TfLiteType type;
  int32_t zero_point;    // the state's initial value (0 for float)
  uint32_t magic;
  bool options_ok;
  bool fill_pending;     // in place: set y to the zero point at the next Eval
  bool in_place;         // option "in_place": y is a variable tensor and is the state (outer x frames x frame_bytes)
};

constexpr uint32_t kMagic = 0x52494e47u;  // "RING"
OpData* live_ops = nullptr;

bool Valid(const OpData* op) { return op->self == op && op->magic == kMagic; }

// Removes from the list `op` (if given) and every entry of `stale_context` (if given). The list is cut at an
// entry that no longer looks like one: its interpreter's arena was reused without the interpreter being
// destroyed (the destructor calls Free), so nothing behind it can be trusted.
void Unlist(const OpData* op, const TfLiteContext* stale_context) {
  OpData** p = &live_ops;
  while (*p != nullptr) {
    OpData* cur = *p;
    if (!Valid(cur)) {
      *p = nullptr;
      return;
    }
    if (cur == op || (stale_context != nullptr && cur->context == stale_context)) {
      *p = cur->next;
      cur->next = nullptr;
      cur->self = nullptr;
      continue;
    }
    p = &cur->next;
  }
}

bool Listed(const OpData* op) {
  for (const OpData* cur = live_ops; cur != nullptr && Valid(cur); cur = cur->next) {
    if (cur == op) return true;
  }
  return false;
}

size_t ElementSize(TfLiteType type) {
  switch (type) {
    case kTfLiteInt8:
    case kTfLiteUInt8:
    case kTfLiteBool:
      return 1;
    case kTfLiteInt16:
    case kTfLiteUInt16:
    case kTfLiteFloat16:
      return 2;
    case kTfLiteInt32:
    case kTfLiteUInt32:
    case kTfLiteFloat32:
      return 4;
    case kTfLiteInt64:
    case kTfLiteUInt64:
    case kTfLiteFloat64:
      return 8;
    default:
      return 0;
  }
}

// Every state element back to the zero point: the encoding of real 0.0.
void FillNow(OpData* op) {
  if (op->state == nullptr || op->state_bytes == 0) return;
  switch (op->type) {
    case kTfLiteInt8:
    case kTfLiteUInt8:
      memset(op->state, static_cast<uint8_t>(op->zero_point), op->state_bytes);
      return;
    case kTfLiteInt16: {
      const int16_t v = static_cast<int16_t>(op->zero_point);
      int16_t* s = reinterpret_cast<int16_t*>(op->state);
      for (size_t i = 0; i < op->state_bytes / sizeof(int16_t); ++i) s[i] = v;
      return;
    }
    default:  // float, and integer types without a zero point: all bytes 0
      memset(op->state, 0, op->state_bytes);
      return;
  }
}

// The same, at a reset. In place it happens at the next Eval: y's memory is TFLite Micro's, which resets variable
// tensors itself after the kernels' reset hooks (int8 to the zero point, but int16 to 0).
void FillInitial(OpData* op) {
  if (op->in_place) {
    op->fill_pending = true;
    return;
  }
  FillNow(op);
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  // An interpreter initialises all its ops before it prepares any, so a listed op with this context belongs to
  // an earlier interpreter at the same address that was never destroyed: forget it.
  Unlist(nullptr, context);
  OpData* op = static_cast<OpData*>(context->AllocatePersistentBuffer(context, sizeof(OpData)));
  if (op == nullptr) return nullptr;
  memset(op, 0, sizeof(OpData));
  if (buffer != nullptr && length > 0) {
    const flexbuffers::Reference root =
        flexbuffers::GetRoot(reinterpret_cast<const uint8_t*>(buffer), length);
    if (root.IsMap()) {
      const flexbuffers::Map map = root.AsMap();
      const flexbuffers::Reference axis = map["axis"];
      const flexbuffers::Reference frames = map["frames"];
      if (axis.IsIntOrUint() && frames.IsIntOrUint()) {
        op->axis = axis.AsInt32();
        op->frames = frames.AsInt32();
        op->options_ok = true;
      }
      const flexbuffers::Reference in_place = map["in_place"];
      if (in_place.IsBool() || in_place.IsIntOrUint()) {
        op->in_place = in_place.IsBool() ? in_place.AsBool() : in_place.AsInt32() != 0;
      }
    }
  }
  return op;
}

#define XSTREAM_ENSURE(cond, ...)  \
  do {                             \
    if (!(cond)) {                 \
      MicroPrintf(__VA_ARGS__);    \
      return kTfLiteError;         \
    }                              \
  } while (0)

TfLiteStatus CheckAndPlan(OpData* op, const TfLiteTensor* x, const TfLiteTensor* y) {
  XSTREAM_ENSURE(op->options_ok, "RING_BUFFER: custom options are not a flexbuffer map {axis, frames}");
  XSTREAM_ENSURE(x != nullptr && y != nullptr, "RING_BUFFER: missing input or output tensor");
  XSTREAM_ENSURE(x->type == y->type, "RING_BUFFER: input and output types differ");
  const size_t element = ElementSize(x->type);
  XSTREAM_ENSURE(element > 0, "RING_BUFFER: unsupported type %d", static_cast<int>(x->type));
  const int rank = x->dims->size;
  XSTREAM_ENSURE(y->dims->size == rank, "RING_BUFFER: input and output ranks differ");
  XSTREAM_ENSURE(op->axis >= 0 && op->axis < rank, "RING_BUFFER: axis %d is not in [0, %d)", op->axis, rank);
  XSTREAM_ENSURE(op->frames >= 1, "RING_BUFFER: frames %d < 1", op->frames);
  size_t outer = 1;
  size_t inner = 1;
  for (int i = 0; i < rank; ++i) {
    const int want = i == op->axis ? op->frames : x->dims->data[i];
    XSTREAM_ENSURE(y->dims->data[i] == want, "RING_BUFFER: output dimension %d is %d, expected %d", i,
                   y->dims->data[i], want);
    if (i < op->axis) outer *= static_cast<size_t>(x->dims->data[i]);
    if (i > op->axis) inner *= static_cast<size_t>(x->dims->data[i]);
  }
  const int n = x->dims->data[op->axis];
  XSTREAM_ENSURE(n >= 1, "RING_BUFFER: input has no frame on axis %d", op->axis);
  if (x->type == kTfLiteInt8 || x->type == kTfLiteUInt8 || x->type == kTfLiteInt16) {
    XSTREAM_ENSURE(x->params.zero_point == y->params.zero_point && x->params.scale == y->params.scale,
                   "RING_BUFFER: output quantization differs from the input's");
  }
  op->n = n;
  op->keep = op->frames > n ? op->frames - n : 0;
  XSTREAM_ENSURE(outer * static_cast<size_t>(op->frames) * inner * element <= 0x7fffffffu,
                 "RING_BUFFER: a window of more than 2 GB");
  op->outer = static_cast<uint32_t>(outer);
  op->frame_bytes = static_cast<uint32_t>(inner * element);
  op->type = x->type;
  op->zero_point = (x->type == kTfLiteFloat32 || x->type == kTfLiteFloat16 || x->type == kTfLiteFloat64)
                       ? 0 : x->params.zero_point;
  return kTfLiteOk;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* op = static_cast<OpData*>(node->user_data);
  XSTREAM_ENSURE(op != nullptr, "RING_BUFFER: no op data (out of persistent memory?)");
  XSTREAM_ENSURE(node->inputs->size == 1 && node->outputs->size == 1,
                 "RING_BUFFER: expects 1 input and 1 output, got %d and %d", node->inputs->size,
                 node->outputs->size);
  tflm::MicroContext* micro_context = tflm::GetMicroContext(context);
  TfLiteTensor* x = micro_context->AllocateTempInputTensor(node, 0);
  TfLiteTensor* y = micro_context->AllocateTempOutputTensor(node, 0);
  const TfLiteStatus status = CheckAndPlan(op, x, y);
  if (x != nullptr) micro_context->DeallocateTempTfLiteTensor(x);
  if (y != nullptr) micro_context->DeallocateTempTfLiteTensor(y);
  if (status != kTfLiteOk) return status;

  if (op->in_place) {
    // y is the state. TFLite Micro allocates variable tensors after Prepare and sets them to their zero point
    // itself (at allocation and at Reset), so its address is taken at the first Eval.
    op->state = nullptr;
    op->state_bytes = op->outer * static_cast<uint32_t>(op->frames) * op->frame_bytes;
  } else if (const uint32_t bytes = op->outer * static_cast<uint32_t>(op->keep) * op->frame_bytes;
             op->state == nullptr || op->state_bytes != bytes) {
    op->state = nullptr;
    op->state_bytes = bytes;
    if (bytes > 0) {
      op->state = static_cast<uint8_t*>(context->AllocatePersistentBuffer(context, bytes));
      XSTREAM_ENSURE(op->state != nullptr, "RING_BUFFER: cannot allocate %d bytes of state",
                     static_cast<int>(bytes));
    }
  }
  FillInitial(op);
  op->context = context;
  if (!Listed(op)) {
    op->next = live_ops;
    op->self = op;
    op->magic = kMagic;
    live_ops = op;
  }
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  OpData* op = static_cast<OpData*>(node->user_data);
  const TfLiteEvalTensor* x = tflm::micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* y = tflm::micro::GetEvalOutput(context, node, 0);
  const uint8_t* in = reinterpret_cast<const uint8_t*>(x->data.raw_const);
  uint8_t* out = reinterpret_cast<uint8_t*>(y->data.raw);
  if (op->in_place) {
    op->state = out;
    if (op->fill_pending) {
      FillNow(op);
      op->fill_pending = false;
    }
  }
  const size_t fb = op->frame_bytes;
  const size_t n = static_cast<size_t>(op->n);
  const size_t frames = static_cast<size_t>(op->frames);
  const size_t keep = static_cast<size_t>(op->keep);
  for (size_t o = 0; o < op->outer; ++o) {
    const uint8_t* xo = in + o * n * fb;
    uint8_t* yo = out + o * frames * fb;
    if (op->in_place && keep > 0) {        // y holds the last invoke's frames: drop the oldest n, append x
      memmove(yo, yo + n * fb, keep * fb);
      memcpy(yo + keep * fb, xo, n * fb);
      continue;
    }
    if (keep == 0) {  // frames <= n: the newest `frames` frames of x
      memcpy(yo, xo + (n - frames) * fb, frames * fb);
      continue;
    }
    uint8_t* so = op->state + o * keep * fb;
    memcpy(yo, so, keep * fb);            // y = concat(state, x): keep + n = frames frames
    memcpy(yo + keep * fb, xo, n * fb);
    memcpy(so, yo + n * fb, keep * fb);   // state = the last keep frames of y
  }
  return kTfLiteOk;
}

void Reset(TfLiteContext* context, void* buffer) {
  (void)context;
  if (buffer != nullptr) FillInitial(static_cast<OpData*>(buffer));
}

void Free(TfLiteContext* context, void* buffer) {
  (void)context;
  if (buffer != nullptr) Unlist(static_cast<const OpData*>(buffer), nullptr);
}

}  // namespace

TFLMRegistration* Register_RING_BUFFER() {
  static TFLMRegistration registration = tflm::micro::RegisterOp(Init, Prepare, Eval, Free, Reset);
  return &registration;
}

#ifndef NO_INTERPRETER
int ResetRingBuffers(const tflm::MicroInterpreter& interpreter) {
  // The interpreter owns its TfLiteContext as a member, so the context our kernels were given lies inside the
  // interpreter object.
  const uintptr_t begin = reinterpret_cast<uintptr_t>(&interpreter);
  const uintptr_t end = begin + sizeof(tflm::MicroInterpreter);
  int count = 0;
  for (OpData* op = live_ops; op != nullptr && Valid(op); op = op->next) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(op->context);
    if (at >= begin && at < end) {
      FillInitial(op);
      ++count;
    }
  }
  return count;
}
#endif

int ResetAllRingBuffers() {
  int count = 0;
  for (OpData* op = live_ops; op != nullptr && Valid(op); op = op->next) {
    FillInitial(op);
    ++count;
  }
  return count;
}

}  // namespace xstream
