/* xcore_generated_host: run the C++ that XMOS xformer generates for a model (model.tflite.cpp / .h) on the host,
   linked against the xmos-ai-tools wheel's host build of the xcore runtime (runtime/lib/libhost_xtflitemicro.a:
   the xcore kernels and TFLite Micro kernels, compiled with NO_INTERPRETER and TF_LITE_STATIC_MEMORY for exactly
   this generated code). It is the code a firmware compiles, with its `tensor_arena` of exactly the size xformer
   reports, its offline memory plan and its op registrations; only the kernels are built for x86 instead of xcore.

   Built by xstream/xcore.py (one binary per compiled model), e.g.
     g++ -std=c++17 -DTF_LITE_STATIC_MEMORY -DTF_LITE_STRIP_ERROR_STRINGS -DXCORE -DNO_INTERPRETER \
         -I<wheel>/runtime/include -include model.tflite.h xcore_generated_host.cc model.tflite.cpp \
         <wheel>/runtime/lib/libhost_xtflitemicro.a

     xcore_generated_host info                 print inputs and outputs
     xcore_generated_host serve [--in-place]   the pipe protocol of xstream_tflm_host serve (see below)

   Streaming models of `xstream convert --target xcore` have the external state form: input 0 is the hop of new
   frames, inputs 1.. are the states S, outputs 1.. their S_next. A firmware compiles them with
   --xcore-same-allocation-input-output-tensor=S,S_next for every pair, so that S_next is written where S is read
   the next time: it sets each S to its zero point once per utterance and never copies state. `--in-place` runs
   that way: an 'I' command still carries bytes for every input (the protocol's shape), but only input 0 is
   written; 'R' sets inputs 1.. to their zero point. Without it, every input is written (the caller feeds S_next
   back as S), as `xstream verify` does. */
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tensorflow/lite/c/common.h"
#include "tensor_bytes.h"

// From the generated header (included with -include): model_init, model_input, model_output, model_invoke,
// model_inputs, model_outputs.

namespace {

using xstream_harness::DtypeName;
using xstream_harness::TensorBytes;

void Describe(FILE* out) {
  auto tensor = [&](const TfLiteTensor* t) {
    fprintf(out, "%s %.9g %d %d", DtypeName(t->type), static_cast<double>(t->params.scale),
            static_cast<int>(t->params.zero_point), t->dims->size);
    for (int i = 0; i < t->dims->size; ++i) fprintf(out, " %d", t->dims->data[i]);
    fprintf(out, "\n");
  };
  fprintf(out, "inputs %zu\n", model_inputs());
  for (size_t i = 0; i < model_inputs(); ++i) tensor(model_input(static_cast<int>(i)));
  fprintf(out, "outputs %zu\n", model_outputs());
  for (size_t i = 0; i < model_outputs(); ++i) tensor(model_output(static_cast<int>(i)));
  // Which state inputs share memory with their S_next output (same-allocation compiled in).
  fprintf(out, "shared");
  for (size_t i = 1; i < model_inputs() && i < model_outputs(); ++i)
    fprintf(out, " %d", model_input(static_cast<int>(i))->data.raw == model_output(static_cast<int>(i))->data.raw);
  fprintf(out, "\n");
}

// A new utterance: every state input at its zero point (0 for float).
void StartUtterance() {
  for (size_t i = 1; i < model_inputs(); ++i) {
    TfLiteTensor* t = model_input(static_cast<int>(i));
    const int fill = t->type == kTfLiteFloat32 ? 0 : static_cast<int>(t->params.zero_point);
    memset(t->data.raw, fill, TensorBytes(t));
  }
}

int Serve(bool in_place) {
  const int proto_fd = dup(STDOUT_FILENO);
  dup2(STDERR_FILENO, STDOUT_FILENO);  // nothing the runtime prints can corrupt the protocol
  FILE* out = fdopen(proto_fd, "wb");
  if (out == nullptr) return 2;
  fprintf(out, "XSTREAM-TFLM-HOST 1\n");
  Describe(out);
  fprintf(out, "ready\n");
  fflush(out);
  std::vector<uint8_t> sink;
  for (;;) {
    const int cmd = fgetc(stdin);
    if (cmd == EOF || cmd == 'Q') return 0;
    if (cmd == 'R') {
      StartUtterance();
      fputc('0', out);
    } else if (cmd == 'I') {
      for (size_t i = 0; i < model_inputs(); ++i) {
        TfLiteTensor* t = model_input(static_cast<int>(i));
        const size_t n = TensorBytes(t);
        uint8_t* dst = reinterpret_cast<uint8_t*>(t->data.raw);
        if (in_place && i > 0) {
          sink.resize(n);
          dst = sink.data();
        }
        if (fread(dst, 1, n, stdin) != n) return 2;
      }
      if (model_invoke() != kTfLiteOk) {
        fputc('E', out);
      } else {
        fputc('0', out);
        for (size_t i = 0; i < model_outputs(); ++i) {
          const TfLiteTensor* t = model_output(static_cast<int>(i));
          fwrite(t->data.raw, 1, TensorBytes(t), out);
        }
      }
    } else {
      fprintf(stderr, "serve: unknown command byte %d\n", cmd);
      return 2;
    }
    fflush(out);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  const bool in_place = argc > 2 && std::string(argv[2]) == "--in-place";
  if ((command != "info" && command != "serve") || (argc > 2 && !in_place) || argc > 3) {
    fprintf(stderr, "usage: xcore_generated_host info | serve [--in-place]\n");
    return 2;
  }
  if (model_init(nullptr) != kTfLiteOk) {  // weights are in the generated .cpp
    fprintf(stderr, "xcore_generated_host: model_init failed (the tensor arena is too small or an op refused)\n");
    return 2;
  }
  StartUtterance();
  if (command == "info") {
    Describe(stdout);
    return 0;
  }
  return Serve(in_place);
}
