/* Unit test of the RING_BUFFER kernel in a real TFLite Micro interpreter, on the shared vectors.

   usage: ring_buffer_test VECTORS.txt
   For each vector it builds a one-op model (x -> RING_BUFFER -> y) with the options encoded by flexbuffers,
   runs the invokes, checks every output byte for byte, and resets where the vector says (alternating
   xstream::ResetRingBuffers and MicroInterpreter::Reset). Then two interpreters of one model run interleaved:
   resetting one leaves the other alone. Everything runs twice: with the state in the kernel's own buffer, and
   in place (option "in_place", y a variable tensor that is the state). Prints "N passed, M failed"; exit status 0
   only if nothing failed. */
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "flatbuffers/flexbuffers.h"
#include "host_op_resolver.h"
#include "ring_buffer.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflm = XSTREAM_TFLM_NAMESPACE;

namespace {

struct Event {
  enum Kind { kInvoke, kReset } kind;
  std::vector<uint8_t> x, y;
};

struct Vector {
  std::string name, dtype;
  int axis = 0, frames = 0, zero_point = 0;
  float scale = 0;
  std::vector<int32_t> shape;
  std::vector<Event> events;
};

size_t ElementSize(const std::string& dtype) {
  return dtype == "int8" ? 1 : dtype == "int16" ? 2 : 4;
}

void AppendValue(const std::string& dtype, const std::string& token, std::vector<uint8_t>* out) {
  uint8_t bytes[4];
  if (dtype == "float32") {
    const float v = strtof(token.c_str(), nullptr);
    memcpy(bytes, &v, 4);
  } else if (dtype == "int16") {
    const int16_t v = static_cast<int16_t>(strtol(token.c_str(), nullptr, 10));
    memcpy(bytes, &v, 2);
  } else {
    const int8_t v = static_cast<int8_t>(strtol(token.c_str(), nullptr, 10));
    memcpy(bytes, &v, 1);
  }
  out->insert(out->end(), bytes, bytes + ElementSize(dtype));
}

bool ParseVectors(const char* path, std::vector<Vector>* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  Vector* cur = nullptr;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string head;
    words >> head;
    if (head == "vector") {
      out->emplace_back();
      cur = &out->back();
      words >> cur->name;
      std::string kv;
      while (words >> kv) {
        const size_t eq = kv.find('=');
        const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
        if (k == "dtype") cur->dtype = v;
        else if (k == "axis") cur->axis = atoi(v.c_str());
        else if (k == "frames") cur->frames = atoi(v.c_str());
        else if (k == "zero_point") cur->zero_point = atoi(v.c_str());
        else if (k == "scale") cur->scale = strtof(v.c_str(), nullptr);
        else if (k == "shape") {
          std::istringstream dims(v);
          std::string d;
          while (std::getline(dims, d, ',')) cur->shape.push_back(atoi(d.c_str()));
        }
      }
    } else if (cur != nullptr && head == "x") {
      cur->events.push_back(Event{Event::kInvoke, {}, {}});
      std::string t;
      while (words >> t) AppendValue(cur->dtype, t, &cur->events.back().x);
    } else if (cur != nullptr && head == "y") {
      std::string t;
      while (words >> t) AppendValue(cur->dtype, t, &cur->events.back().y);
    } else if (cur != nullptr && head == "reset") {
      cur->events.push_back(Event{Event::kReset, {}, {}});
    }
  }
  return !out->empty();
}

tflm::TensorType TensorType(const std::string& dtype) {
  if (dtype == "int8") return tflm::TensorType_INT8;
  if (dtype == "int16") return tflm::TensorType_INT16;
  return tflm::TensorType_FLOAT32;
}

bool g_in_place = false;  // build the op with option "in_place" and y a variable tensor

// x -> RING_BUFFER{axis, frames} -> y, options written with flexbuffers like xstream.ring_buffer.encode_options.
std::vector<uint8_t> BuildModel(const Vector& v) {
  flatbuffers::FlatBufferBuilder fbb;
  flexbuffers::Builder options;
  options.Map([&]() {
    options.Int("axis", v.axis);
    options.Int("frames", v.frames);
    if (g_in_place) options.Bool("in_place", true);
  });
  options.Finish();
  std::vector<int32_t> y_shape = v.shape;
  y_shape[v.axis] = v.frames;
  auto quant = [&]() {
    if (v.dtype == "float32") return flatbuffers::Offset<tflm::QuantizationParameters>();
    return tflm::CreateQuantizationParameters(fbb, 0, 0, fbb.CreateVector(std::vector<float>{v.scale}),
                                              fbb.CreateVector(std::vector<int64_t>{v.zero_point}));
  };
  const auto qx = quant();
  const auto qy = quant();
  const auto x = tflm::CreateTensor(fbb, fbb.CreateVector(v.shape), TensorType(v.dtype), 0,
                                    fbb.CreateString("x"), qx);
  const auto y = tflm::CreateTensor(fbb, fbb.CreateVector(y_shape), TensorType(v.dtype), 0,
                                    fbb.CreateString("y"), qy, g_in_place);
  const auto op = tflm::CreateOperator(fbb, 0, fbb.CreateVector(std::vector<int32_t>{0}),
                                       fbb.CreateVector(std::vector<int32_t>{1}), tflm::BuiltinOptions_NONE, 0,
                                       fbb.CreateVector(options.GetBuffer()),
                                       tflm::CustomOptionsFormat_FLEXBUFFERS);
  const auto subgraph = tflm::CreateSubGraph(
      fbb, fbb.CreateVector(std::vector<flatbuffers::Offset<tflm::Tensor>>{x, y}),
      fbb.CreateVector(std::vector<int32_t>{0}), fbb.CreateVector(std::vector<int32_t>{1}),
      fbb.CreateVector(std::vector<flatbuffers::Offset<tflm::Operator>>{op}));
  const auto code = tflm::CreateOperatorCode(fbb, tflm::BuiltinOperator_CUSTOM,
                                             fbb.CreateString(xstream::kRingBufferCustomCode), 1,
                                             tflm::BuiltinOperator_CUSTOM);
  const auto model = tflm::CreateModel(
      fbb, 3, fbb.CreateVector(std::vector<flatbuffers::Offset<tflm::OperatorCode>>{code}),
      fbb.CreateVector(std::vector<flatbuffers::Offset<tflm::SubGraph>>{subgraph}), fbb.CreateString("test"),
      fbb.CreateVector(std::vector<flatbuffers::Offset<tflm::Buffer>>{tflm::CreateBuffer(fbb)}));
  tflm::FinishModelBuffer(fbb, model);
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

// One interpreter of a one-op model, with RING_BUFFER registered by the one line an application writes.
struct Runner {
  std::vector<uint8_t> model;
  std::vector<uint8_t> arena = std::vector<uint8_t>(64 * 1024);
  xstream_host::HostOpResolver<2> resolver;
  alignas(16) uint8_t storage[sizeof(tflm::MicroInterpreter)];
  tflm::MicroInterpreter* it = nullptr;

  explicit Runner(const Vector& v) : model(BuildModel(v)) {
    xstream::AddRingBuffer(resolver);
    it = new (storage) tflm::MicroInterpreter(tflm::GetModel(model.data()), resolver, arena.data(), arena.size());
    if (it->AllocateTensors() != kTfLiteOk) it = nullptr;
  }
  ~Runner() {
    if (it != nullptr) it->~MicroInterpreter();
  }
  bool Invoke(const std::vector<uint8_t>& x, std::vector<uint8_t>* y) {
    TfLiteTensor* in = it->input(0);
    if (in->bytes != x.size()) return false;
    memcpy(in->data.raw, x.data(), x.size());
    if (it->Invoke() != kTfLiteOk) return false;
    TfLiteTensor* out = it->output(0);
    y->assign(reinterpret_cast<uint8_t*>(out->data.raw), reinterpret_cast<uint8_t*>(out->data.raw) + out->bytes);
    return true;
  }
};

int passed = 0, failed = 0;

void Check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    printf("FAILED: %s\n", what.c_str());
  }
}

void RunVector(const Vector& v) {
  Runner r(v);
  if (r.it == nullptr) {
    Check(false, v.name + ": AllocateTensors");
    return;
  }
  int resets = 0, invoke = 0;
  bool ok = true;
  std::vector<uint8_t> y;
  for (const Event& e : v.events) {
    if (e.kind == Event::kReset) {
      // Alternate the two ways to start an utterance.
      if (resets++ % 2 == 0) ok = ok && xstream::ResetRingBuffers(*r.it) == 1;
      else ok = ok && r.it->Reset() == kTfLiteOk;
      continue;
    }
    ++invoke;
    if (!r.Invoke(e.x, &y) || y != e.y) {
      printf("  %s: invoke %d differs\n", v.name.c_str(), invoke);
      ok = false;
      break;
    }
  }
  Check(ok, v.name);
}

// Two interpreters of the same model: each keeps its own state, and a reset reaches only its own.
void RunTwoInterpreters(const Vector& v) {
  std::vector<const Event*> invokes;
  for (const Event& e : v.events)
    if (e.kind == Event::kInvoke) invokes.push_back(&e);
  if (invokes.size() < 3) return;
  Runner a(v), b(v);
  if (a.it == nullptr || b.it == nullptr) {
    Check(false, v.name + ": two interpreters: AllocateTensors");
    return;
  }
  std::vector<uint8_t> ya, yb;
  bool ok = a.Invoke(invokes[0]->x, &ya) && ya == invokes[0]->y;   // a has seen invoke 0
  ok = ok && xstream::ResetRingBuffers(*b.it) == 1;                  // resetting b leaves a alone
  ok = ok && b.Invoke(invokes[0]->x, &yb) && yb == invokes[0]->y;   // b starts from the zero point
  ok = ok && a.Invoke(invokes[1]->x, &ya) && ya == invokes[1]->y;   // a continues
  ok = ok && xstream::ResetRingBuffers(*a.it) == 1;
  ok = ok && a.Invoke(invokes[0]->x, &ya) && ya == invokes[0]->y;   // a starts again
  ok = ok && b.Invoke(invokes[1]->x, &yb) && yb == invokes[1]->y;   // b was not reset
  Check(ok, v.name + ": two interpreters, separate state and reset");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: ring_buffer_test VECTORS.txt\n");
    return 2;
  }
  std::vector<Vector> vectors;
  if (!ParseVectors(argv[1], &vectors)) {
    fprintf(stderr, "cannot read vectors from %s\n", argv[1]);
    return 2;
  }
  for (bool in_place : {false, true}) {
    g_in_place = in_place;
    for (Vector v : vectors) {
      if (in_place) v.name += " (in place)";
      RunVector(v);
    }
    RunTwoInterpreters(vectors[1]);
  }
  {
    // After both interpreters are gone, no ring buffer is left to reset.
    Check(xstream::ResetAllRingBuffers() == 0, "destroyed interpreters leave no ring buffer behind");
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
