/* stream_tflm: run a model written by `xstream convert` in TensorFlow Lite Micro, one hop per invoke.

     stream_tflm MODEL.tflite FRAMES.npy [--out OUT.npy] [--arena BYTES] [--quiet]

   FRAMES.npy is shaped like the model's input 0 with any length on axis 1 (time): one sequence. With one more
   leading axis ([S, 1, L, ...]) it holds S sequences, and the state is reset before each one. Each sequence is cut
   into hops of input 0's length on axis 1 and fed one hop per invoke; every output that is not state is printed
   per step ("seq S step K out J: v v v ...") and, with --out, written to OUT.npy shaped [S, steps, *output 0]
   (output J > 0 to OUT.J.npy).

   Every form of `xstream convert` runs here:
     ring-buffer  RING_BUFFER custom ops: xstream's kernel, registered with xstream::AddRingBuffer;
     variable     resource variables (VAR_HANDLE/READ_VARIABLE/ASSIGN_VARIABLE, CALL_ONCE init subgraph):
                  MicroResourceVariables, one slot per variable;
     external     state as extra inputs `S` and outputs `S_next`: this program feeds S_next back into S after
                  every invoke and fills S with its zero point at the start of a sequence.
   The steps a firmware needs are numbered 1-6 below. */
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "host_op_resolver.h"  // kernels/harness: a resolver for TFLM builds without gemmlowp (xmos-ai-tools)
#include "model_file.h"        // kernels/harness: read the .tflite, an operator's builtin code
#include "npy.h"               // kernels/harness: read frames, write outputs
#include "ring_buffer.h"       // kernels/ring_buffer: the RING_BUFFER kernel
#include "tensor_bytes.h"      // kernels/harness: dtype names and byte sizes
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflm = XSTREAM_TFLM_NAMESPACE;

namespace {

constexpr size_t kDefaultArena = 256 * 1024;
constexpr unsigned kMaxOps = 64;

using xstream_harness::BuiltinCode;
using xstream_harness::DtypeName;
using xstream_harness::ReadFile;
using xstream_harness::TensorBytes;

std::string TensorName(const tflm::SubGraph* sg, int index) {
  const tflm::Tensor* t = sg->tensors()->Get(index);
  return t->name() != nullptr ? t->name()->str() : "";
}

int ZeroPoint(const TfLiteTensor* t) {
  return t->quantization.type == kTfLiteAffineQuantization ? t->params.zero_point : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::string out_path;
  size_t arena_bytes = kDefaultArena;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out" && i + 1 < argc) {
      out_path = argv[++i];
    } else if (a == "--arena" && i + 1 < argc) {
      arena_bytes = strtoul(argv[++i], nullptr, 10);
    } else if (a == "--quiet") {
      quiet = true;
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2 || arena_bytes == 0) {
    fprintf(stderr, "usage: stream_tflm MODEL.tflite FRAMES.npy [--out OUT.npy] [--arena BYTES] [--quiet]\n");
    return 2;
  }

  // 1. The model: a flatbuffer that must outlive the interpreter (in a firmware: a const array in flash).
  std::vector<uint8_t> model_data;
  if (!ReadFile(positional[0], &model_data) || model_data.empty()) {
    fprintf(stderr, "cannot read %s\n", positional[0].c_str());
    return 2;
  }
  flatbuffers::Verifier verifier(model_data.data(), model_data.size());
  if (!tflm::VerifyModelBuffer(verifier)) {
    fprintf(stderr, "%s is not a .tflite flatbuffer\n", positional[0].c_str());
    return 2;
  }
  const tflm::Model* model = tflm::GetModel(model_data.data());

  // What the model needs: the op list (for a MicroMutableOpResolver<N>), its ring buffers and its resource
  // variables (one MicroResourceVariables slot per distinct shared_name).
  std::set<std::string> op_names;
  std::set<std::string> variables;
  int ring_buffers = 0;
  for (const tflm::SubGraph* sg : *model->subgraphs()) {
    if (sg->operators() == nullptr) continue;
    for (const tflm::Operator* op : *sg->operators()) {
      const tflm::OperatorCode* code = model->operator_codes()->Get(op->opcode_index());
      const tflm::BuiltinOperator builtin = BuiltinCode(code);
      if (builtin == tflm::BuiltinOperator_CUSTOM) {
        const std::string name = code->custom_code() != nullptr ? code->custom_code()->str() : "?";
        op_names.insert(name);
        if (name == xstream::kRingBufferCustomCode) ++ring_buffers;
      } else {
        op_names.insert(tflm::EnumNameBuiltinOperator(builtin));
      }
      if (builtin == tflm::BuiltinOperator_VAR_HANDLE) {
        const tflm::VarHandleOptions* o = op->builtin_options_as_VarHandleOptions();
        variables.insert(o != nullptr && o->shared_name() != nullptr ? o->shared_name()->str() : "");
      }
    }
  }

  // 2. The ops. A firmware on upstream TFLM writes tflite::MicroMutableOpResolver<N> and resolver.AddConv2D() etc.
  //    for the ops printed below; the xmos-ai-tools runtime lacks gemmlowp's headers that class needs, so this
  //    program uses the harness's resolver (same AddCustom call). RING_BUFFER is the one line xstream adds.
  static xstream_host::HostOpResolver<kMaxOps> resolver;
  if (!xstream_host::AddXstreamBuiltins(resolver) || xstream::AddRingBuffer(resolver) != kTfLiteOk) {
    fprintf(stderr, "op resolver is full\n");
    return 2;
  }

  // 3. Memory: one arena for tensors, op data, RING_BUFFER state and resource-variable buffers. The variable form
  //    also needs MicroResourceVariables (its bookkeeping is allocated from the same arena here; ESPHome uses a
  //    separate small arena for it).
  std::vector<uint8_t> arena(arena_bytes + 16);
  uint8_t* aligned = arena.data() + ((16 - reinterpret_cast<uintptr_t>(arena.data()) % 16) % 16);
  tflm::MicroAllocator* allocator = tflm::MicroAllocator::Create(aligned, arena_bytes);
  if (allocator == nullptr) {
    fprintf(stderr, "arena of %zu bytes is too small for the allocator\n", arena_bytes);
    return 2;
  }
  tflm::MicroResourceVariables* resource_variables = nullptr;
  if (!variables.empty()) {
    resource_variables = tflm::MicroResourceVariables::Create(allocator, static_cast<int>(variables.size()));
    if (resource_variables == nullptr) {
      fprintf(stderr, "cannot allocate %zu resource variables\n", variables.size());
      return 2;
    }
  }

  // 4. The interpreter. AllocateTensors runs every op's Init and Prepare (RING_BUFFER allocates its state there,
  //    CALL_ONCE zeroes the resource variables on the first Invoke).
  alignas(16) static uint8_t storage[sizeof(tflm::MicroInterpreter)];
  tflm::MicroInterpreter* interpreter =
      new (storage) tflm::MicroInterpreter(model, resolver, allocator, resource_variables);
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    fprintf(stderr, "AllocateTensors failed: an op missing from the resolver, or --arena %zu too small\n",
            arena_bytes);
    return 2;
  }
  tflm::MicroInterpreter& it = *interpreter;

  // The external form: input i > 0 named S is state, fed by the output named S_next.
  const tflm::SubGraph* main_graph = model->subgraphs()->Get(0);
  std::vector<int> feedback(it.inputs_size(), -1);  // input index -> output index
  std::vector<bool> is_state_output(it.outputs_size(), false);
  for (size_t i = 1; i < it.inputs_size(); ++i) {
    const std::string name = TensorName(main_graph, main_graph->inputs()->Get(i)) + "_next";
    for (size_t j = 0; j < it.outputs_size(); ++j) {
      if (TensorName(main_graph, main_graph->outputs()->Get(j)) == name) {
        feedback[i] = static_cast<int>(j);
        is_state_output[j] = true;
      }
    }
    if (feedback[i] < 0 || TensorBytes(it.input(i)) != TensorBytes(it.output(feedback[i]))) {
      fprintf(stderr, "input %zu has no matching output %s of its size\n", i, name.c_str());
      return 2;
    }
  }
  const char* form = it.inputs_size() > 1 ? "external" : !variables.empty() ? "variable"
                     : ring_buffers > 0 ? "ring-buffer" : "stateless";
  size_t state_bytes = 0;
  for (size_t i = 1; i < it.inputs_size(); ++i) state_bytes += TensorBytes(it.input(i));
  std::vector<uint8_t> next_states(state_bytes);

  TfLiteTensor* in = it.input(0);
  printf("model %s: form %s, %d RING_BUFFER op(s), %zu resource variable(s), %zu external state input(s) "
         "(%zu bytes)\n", positional[0].c_str(), form, ring_buffers, variables.size(), it.inputs_size() - 1,
         state_bytes);
  printf("ops (%zu):", op_names.size());
  for (const std::string& name : op_names) printf(" %s", name.c_str());
  printf("\ninput 0: %s [", DtypeName(in->type));
  for (int d = 0; d < in->dims->size; ++d) printf(d ? ", %d" : "%d", in->dims->data[d]);
  printf("], %d frame(s) per invoke\n", in->dims->data[1]);
  printf("arena: %zu bytes used of %zu (interpreter.arena_used_bytes())\n", it.arena_used_bytes(), arena_bytes);

  // The frames.
  xstream_host::NpyArray frames;
  std::string error;
  if (!xstream_host::ReadNpy(positional[1], &frames, &error)) {
    fprintf(stderr, "%s\n", error.c_str());
    return 2;
  }
  const int rank = in->dims->size;
  const bool batched = static_cast<int>(frames.shape.size()) == rank + 1;
  bool fits = xstream_host::SameDescr(frames.descr, xstream_host::NpyDescr(DtypeName(in->type))) &&
              rank >= 2 && in->dims->data[0] == 1 && (batched || static_cast<int>(frames.shape.size()) == rank);
  const int off = batched ? 1 : 0;
  for (int d = 0; fits && d < rank; ++d)
    if (d != 1 && frames.shape[d + off] != in->dims->data[d]) fits = false;
  if (!fits) {
    fprintf(stderr, "%s must be %s shaped like input 0 with any length on axis 1, optionally with a leading "
                    "sequence axis\n", positional[1].c_str(), DtypeName(in->type));
    return 2;
  }
  const size_t sequences = batched ? static_cast<size_t>(frames.shape[0]) : 1;
  const size_t hop_bytes = TensorBytes(in);  // batch 1, time on axis 1: one hop is contiguous
  const size_t sequence_bytes = frames.data.size() / sequences;
  const size_t steps = sequence_bytes / hop_bytes;
  if (steps == 0) {
    fprintf(stderr, "%s holds less than one hop per sequence\n", positional[1].c_str());
    return 2;
  }

  std::vector<std::vector<uint8_t>> outputs(it.outputs_size());
  for (size_t s = 0; s < sequences; ++s) {
    // 5. A new sequence (utterance): forget the previous one's frames.
    if (s > 0) {
      if (ring_buffers > 0 && variables.empty()) {
        // ring-buffer form: exactly this interpreter's RING_BUFFER states back to the zero point.
        if (xstream::ResetRingBuffers(it) != ring_buffers) {
          fprintf(stderr, "ResetRingBuffers did not reset %d ring buffers\n", ring_buffers);
          return 2;
        }
      } else if (it.Reset() != kTfLiteOk) {  // every kernel's reset hook and every resource variable
        fprintf(stderr, "interpreter.Reset() failed\n");
        return 2;
      }
    }
    for (size_t i = 1; i < it.inputs_size(); ++i) {  // external form: state starts at the zero point
      TfLiteTensor* t = it.input(i);
      if (t->type == kTfLiteInt8 || t->type == kTfLiteUInt8) {
        memset(t->data.raw, ZeroPoint(t), TensorBytes(t));
      } else if (t->type == kTfLiteInt16) {
        for (size_t e = 0; e < TensorBytes(t) / 2; ++e) t->data.i16[e] = static_cast<int16_t>(ZeroPoint(t));
      } else {
        memset(t->data.raw, 0, TensorBytes(t));
      }
    }
    // 6. One hop per invoke.
    for (size_t k = 0; k < steps; ++k) {
      memcpy(in->data.raw, frames.data.data() + s * sequence_bytes + k * hop_bytes, hop_bytes);
      if (it.Invoke() != kTfLiteOk) {
        fprintf(stderr, "Invoke failed at sequence %zu step %zu\n", s, k);
        return 2;
      }
      for (size_t j = 0; j < it.outputs_size(); ++j) {
        if (is_state_output[j]) continue;
        const TfLiteTensor* t = it.output(j);
        const uint8_t* p = reinterpret_cast<const uint8_t*>(t->data.raw);
        outputs[j].insert(outputs[j].end(), p, p + TensorBytes(t));
        if (quiet) continue;
        printf("seq %zu step %zu out %zu:", s, k, j);
        size_t count = 1;
        for (int d = 0; d < t->dims->size; ++d) count *= t->dims->data[d];
        for (size_t e = 0; e < count; ++e) {
          switch (t->type) {
            case kTfLiteInt8: printf(" %d", t->data.int8[e]); break;
            case kTfLiteUInt8: printf(" %u", t->data.uint8[e]); break;
            case kTfLiteInt16: printf(" %d", t->data.i16[e]); break;
            case kTfLiteInt32: printf(" %d", static_cast<int>(t->data.i32[e])); break;
            case kTfLiteFloat32: printf(" %.9g", static_cast<double>(t->data.f[e])); break;
            default: printf(" ?"); break;
          }
        }
        printf("\n");
      }
      // External form: S <- S_next, after the outputs are read and through a copy of every S_next first. The
      // arena planner may give an output or an S_next the bytes of an S (dead once its CONCATENATION ran), so
      // writing an S straight away can overwrite an output or an S_next not yet copied.
      size_t at = 0;
      for (size_t i = 1; i < it.inputs_size(); ++i) {
        const uint8_t* p = reinterpret_cast<const uint8_t*>(it.output(feedback[i])->data.raw);
        memcpy(next_states.data() + at, p, TensorBytes(it.input(i)));
        at += TensorBytes(it.input(i));
      }
      at = 0;
      for (size_t i = 1; i < it.inputs_size(); ++i) {
        memcpy(it.input(i)->data.raw, next_states.data() + at, TensorBytes(it.input(i)));
        at += TensorBytes(it.input(i));
      }
    }
  }
  printf("%zu sequence(s) x %zu step(s) of %d frame(s); arena used %zu bytes\n", sequences, steps,
         in->dims->data[1], it.arena_used_bytes());

  if (!out_path.empty()) {
    for (size_t j = 0; j < it.outputs_size(); ++j) {
      if (is_state_output[j]) continue;
      const TfLiteTensor* t = it.output(j);
      std::vector<int64_t> shape = {static_cast<int64_t>(sequences), static_cast<int64_t>(steps)};
      for (int d = 0; d < t->dims->size; ++d) shape.push_back(t->dims->data[d]);
      std::string path = out_path;
      if (j > 0) {
        const bool npy = path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0;
        path = (npy ? path.substr(0, path.size() - 4) : path) + "." + std::to_string(j) + ".npy";
      }
      if (!xstream_host::WriteNpy(path, xstream_host::NpyDescr(DtypeName(t->type)), shape, outputs[j].data(),
                                  outputs[j].size())) {
        fprintf(stderr, "cannot write %s\n", path.c_str());
        return 2;
      }
    }
  }
  interpreter->~MicroInterpreter();
  return 0;
}
