/* xstream_tflm_host: run a streaming .tflite in TensorFlow Lite Micro on the host, with the RING_BUFFER kernel.

   It is both xstream's test harness (`serve`, driven by `xstream verify --runtime tflm-host`) and the example to
   copy into an application (`run`). The steps an application needs are marked 1-5 in Session::Load and
   StartUtterance below.

     xstream_tflm_host info  MODEL [--arena BYTES]
         print the model's inputs and outputs
     xstream_tflm_host run   MODEL FRAMES.npy OUT.npy [--utterances K] [--arena BYTES]
         FRAMES.npy is shaped like input 0 with any length on axis 1 (time): it is cut into hops and fed one
         hop per invoke; OUT.npy gets output 0 of every invoke that ran to the end, stacked on a new axis 0
         (output i > 0 goes to OUT.i.npy). In the circular-buffer form an invoke whose CIRCULAR_BUFFER is still
         collecting frames ends early (kTfLiteAbort) and gives no output. With --utterances K the same frames are fed K times with a reset in between, and the
         run checks that every utterance gives the outputs of the first.
     xstream_tflm_host serve MODEL [--arena BYTES]
         a binary protocol on stdin/stdout (see Serve) for a test driver.
     xstream_tflm_host time  MODEL [MODEL...] [--runs N] [--arena BYTES]
         per-invoke latency: N timed invokes of each model (after N/10 untimed), the models taking turns in one
         loop so that all see the same machine load; inputs are fresh pseudo-random bytes each invoke, written
         outside the timer. Prints one line per model: `time MODEL median_ns mean_ns min_ns invokes aborted`
         (aborted: invokes a CIRCULAR_BUFFER ended early).
     xstream_tflm_host arena MODEL [--invoke] [--max BYTES] [--band BYTES]
         the smallest arena with which the model allocates (and, with --invoke, invokes once with zero inputs);
         see Arena. Prints `key value...` lines: arena_bytes, arena_used_bytes, tries, crashes, non_monotonic,
         and the RecordingMicroAllocator's breakdown (recorded_* requested used count, head, tail).

   Works for every form `xstream convert` writes: ring-buffer (RING_BUFFER custom ops), variable (resource
   variables), external (state as extra inputs/outputs: serve only) and circular-buffer (TFLM's own
   CIRCULAR_BUFFER, which returns kTfLiteAbort while it waits for frames). */
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "host_op_resolver.h"
#include "model_file.h"
#include "npy.h"
#include "ring_buffer.h"
#include "tensor_bytes.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/micro/recording_micro_allocator.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflm = XSTREAM_TFLM_NAMESPACE;
using xstream_host::HostOpResolver;

namespace {

constexpr size_t kDefaultArena = 4 << 20;
constexpr unsigned kMaxOps = 96;

using xstream_harness::BuiltinCode;
using xstream_harness::DtypeName;
using xstream_harness::ReadFile;
using xstream_harness::TensorBytes;

struct Session {
  std::vector<uint8_t> model_data;  // the flatbuffer must outlive the interpreter
  std::vector<uint8_t> arena;
  HostOpResolver<kMaxOps> resolver;
  tflm::MicroInterpreter* interpreter = nullptr;
  alignas(16) uint8_t interpreter_storage[sizeof(tflm::MicroInterpreter)];
  int ring_buffers = 0;    // RING_BUFFER ops in the model
  int var_handles = 0;     // VAR_HANDLE ops in all subgraphs (the `variable` form)

  ~Session() {
    if (interpreter != nullptr) interpreter->~MicroInterpreter();
  }

  tflm::RecordingMicroAllocator* recording = nullptr;  // only with Load(..., record = true)

  bool Load(const std::string& path, size_t arena_bytes, std::string* error, bool record = false) {
    if (!ReadFile(path, &model_data) || model_data.empty()) {
      *error = "cannot read " + path;
      return false;
    }
    flatbuffers::Verifier verifier(model_data.data(), model_data.size());
    if (!tflm::VerifyModelBuffer(verifier)) {
      *error = path + " is not a valid .tflite flatbuffer";
      return false;
    }
    // 1. The model.
    const tflm::Model* model = tflm::GetModel(model_data.data());
    for (const tflm::SubGraph* sg : *model->subgraphs()) {
      if (sg->operators() == nullptr) continue;
      for (const tflm::Operator* op : *sg->operators()) {
        const tflm::OperatorCode* code = model->operator_codes()->Get(op->opcode_index());
        if (BuiltinCode(code) == tflm::BuiltinOperator_VAR_HANDLE) ++var_handles;
        if (BuiltinCode(code) == tflm::BuiltinOperator_CUSTOM && code->custom_code() != nullptr &&
            code->custom_code()->str() == xstream::kRingBufferCustomCode)
          ++ring_buffers;
      }
    }
    // 2. The ops: the builtins, xstream's RING_BUFFER (the one line an application adds) and TFLM's own
    //    CIRCULAR_BUFFER for the circular-buffer form.
    if (!xstream_host::AddXstreamBuiltins(resolver) || xstream::AddRingBuffer(resolver) != kTfLiteOk ||
        resolver.AddCustom("CIRCULAR_BUFFER", tflm::Register_CIRCULAR_BUFFER()) != kTfLiteOk) {
      *error = "op resolver is full";
      return false;
    }
    // 3. Memory: one arena. The variable form also needs MicroResourceVariables, one slot per variable.
    arena.resize(arena_bytes);
    tflm::MicroAllocator* allocator = nullptr;
    if (record) {
      recording = tflm::RecordingMicroAllocator::Create(arena.data(), arena.size());
      allocator = recording;
    } else {
      allocator = tflm::MicroAllocator::Create(arena.data(), arena.size());
    }
    if (allocator == nullptr) {
      *error = "arena too small for the allocator";
      return false;
    }
    tflm::MicroResourceVariables* variables = nullptr;
    if (var_handles > 0) {
      variables = tflm::MicroResourceVariables::Create(allocator, var_handles);
      if (variables == nullptr) {
        *error = "cannot allocate resource variables";
        return false;
      }
    }
    // 4. The interpreter. AllocateTensors runs every op's Init and Prepare (RING_BUFFER allocates its state
    //    there) and then Reset, so the state starts at the zero point.
    interpreter = new (interpreter_storage) tflm::MicroInterpreter(model, resolver, allocator, variables);
    if (interpreter->AllocateTensors() != kTfLiteOk) {
      *error = "AllocateTensors failed (an unsupported op, a shape the kernels refuse, or --arena too small)";
      return false;
    }
    return true;
  }

  // 5. A new utterance: forget the previous one's frames.
  TfLiteStatus StartUtterance() {
    if (ring_buffers > 0 && var_handles == 0) {
      // Ring-buffer form: reset exactly the RING_BUFFER states of this interpreter.
      return xstream::ResetRingBuffers(*interpreter) == ring_buffers ? kTfLiteOk : kTfLiteError;
    }
    // Any form: every kernel's reset hook, variable tensors (CIRCULAR_BUFFER's) to their zero point, resource
    // variables to their zero point (the variable form's state).
    return interpreter->Reset();
  }
};

void Describe(FILE* out, Session& s) {
  tflm::MicroInterpreter& it = *s.interpreter;
  auto tensor = [&](TfLiteTensor* t) {
    fprintf(out, "%s %.9g %d %d", DtypeName(t->type), static_cast<double>(t->params.scale),
            static_cast<int>(t->params.zero_point), t->dims->size);
    for (int i = 0; i < t->dims->size; ++i) fprintf(out, " %d", t->dims->data[i]);
    fprintf(out, "\n");
  };
  fprintf(out, "inputs %zu\n", it.inputs_size());
  for (size_t i = 0; i < it.inputs_size(); ++i) tensor(it.input(i));
  fprintf(out, "outputs %zu\n", it.outputs_size());
  for (size_t i = 0; i < it.outputs_size(); ++i) tensor(it.output(i));
  fprintf(out, "ring_buffers %d\nresource_variables %d\narena_used %zu\n", s.ring_buffers, s.var_handles,
          it.arena_used_bytes());
}

bool ReadExactly(FILE* in, uint8_t* dst, size_t n) { return fread(dst, 1, n, in) == n; }

/* serve: after a text header (Describe, then "ready"), commands of one byte on stdin:
     'I' + the bytes of every input, in order  ->  status byte ('0' ok, 'A' kTfLiteAbort: the rest of the graph
                                                   was skipped, 'E' error) + the bytes of every output
     'R'                                        ->  status byte: a new utterance (Session::StartUtterance)
     'Q' or end of input                        ->  exit
   stdout is moved to stderr so that anything TFLM prints cannot corrupt the protocol. */
int Serve(Session& s) {
  const int proto_fd = dup(STDOUT_FILENO);
  dup2(STDERR_FILENO, STDOUT_FILENO);
  FILE* out = fdopen(proto_fd, "wb");
  if (out == nullptr) return 2;
  fprintf(out, "XSTREAM-TFLM-HOST 1\n");
  Describe(out, s);
  fprintf(out, "ready\n");
  fflush(out);
  tflm::MicroInterpreter& it = *s.interpreter;
  for (;;) {
    int cmd = fgetc(stdin);
    if (cmd == EOF || cmd == 'Q') return 0;
    if (cmd == 'R') {
      fputc(s.StartUtterance() == kTfLiteOk ? '0' : 'E', out);
    } else if (cmd == 'I') {
      for (size_t i = 0; i < it.inputs_size(); ++i) {
        TfLiteTensor* t = it.input(i);
        if (!ReadExactly(stdin, reinterpret_cast<uint8_t*>(t->data.raw), TensorBytes(t))) return 2;
      }
      const TfLiteStatus status = it.Invoke();
      if (status != kTfLiteOk && status != tflm::kTfLiteAbort) {
        fputc('E', out);
      } else {
        fputc(status == kTfLiteOk ? '0' : 'A', out);
        for (size_t i = 0; i < it.outputs_size(); ++i) {
          TfLiteTensor* t = it.output(i);
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

int Run(Session& s, const std::string& frames_path, const std::string& out_path, int utterances) {
  tflm::MicroInterpreter& it = *s.interpreter;
  if (it.inputs_size() != 1) {
    fprintf(stderr, "run feeds one input; this model has %zu (the external form: use serve and feed each "
                    "S_next back as S)\n", it.inputs_size());
    return 2;
  }
  TfLiteTensor* in = it.input(0);
  xstream_host::NpyArray frames;
  std::string error;
  if (!xstream_host::ReadNpy(frames_path, &frames, &error)) {
    fprintf(stderr, "%s\n", error.c_str());
    return 2;
  }
  const std::string dtype = DtypeName(in->type);
  bool fits = xstream_host::SameDescr(frames.descr, xstream_host::NpyDescr(dtype)) &&
              in->dims->size >= 2 && in->dims->data[0] == 1 &&
              static_cast<int>(frames.shape.size()) == in->dims->size;
  for (int i = 0; fits && i < in->dims->size; ++i)
    if (i != 1 && frames.shape[i] != in->dims->data[i]) fits = false;
  if (!fits) {
    fprintf(stderr, "%s must be %s shaped like input 0 with any length on axis 1\n", frames_path.c_str(),
            dtype.c_str());
    return 2;
  }
  const size_t hop_bytes = TensorBytes(in);  // batch 1: one hop is contiguous
  const size_t steps = frames.data.size() / hop_bytes;
  if (steps == 0) {
    fprintf(stderr, "%s holds less than one hop (%d frames)\n", frames_path.c_str(), in->dims->data[1]);
    return 2;
  }
  std::vector<std::vector<uint8_t>> outputs(it.outputs_size());
  size_t skipped = 0, written = 0, first_utterance = 0;
  bool identical = true;
  for (int u = 0; u < utterances; ++u) {
    if (u > 0 && s.StartUtterance() != kTfLiteOk) {
      fprintf(stderr, "reset failed\n");
      return 2;
    }
    size_t done = 0;  // invokes of this utterance that ran to the end
    for (size_t k = 0; k < steps; ++k) {
      memcpy(in->data.raw, frames.data.data() + k * hop_bytes, hop_bytes);
      const TfLiteStatus status = it.Invoke();
      if (status == tflm::kTfLiteAbort) {
        ++skipped;  // a CIRCULAR_BUFFER is still collecting frames: no new output this invoke
        continue;
      }
      if (status != kTfLiteOk) {
        fprintf(stderr, "Invoke failed at utterance %d, step %zu\n", u + 1, k);
        return 2;
      }
      for (size_t j = 0; j < it.outputs_size(); ++j) {
        TfLiteTensor* t = it.output(j);
        const uint8_t* p = reinterpret_cast<const uint8_t*>(t->data.raw);
        const size_t bytes = TensorBytes(t);
        if (u > 0) {
          identical = identical && done < first_utterance &&
                      memcmp(outputs[j].data() + done * bytes, p, bytes) == 0;
        }
        outputs[j].insert(outputs[j].end(), p, p + bytes);
      }
      ++done;
      ++written;
    }
    if (u == 0) first_utterance = done;
    if (u > 0) {
      identical = identical && done == first_utterance;
      printf("utterance %d after reset: %s utterance 1\n", u + 1, identical ? "identical to" : "DIFFERENT from");
    }
  }
  for (size_t j = 0; j < it.outputs_size(); ++j) {
    TfLiteTensor* t = it.output(j);
    std::vector<int64_t> shape = {static_cast<int64_t>(written)};
    for (int i = 0; i < t->dims->size; ++i) shape.push_back(t->dims->data[i]);
    std::string path = out_path;
    if (j > 0) {
      const std::string stem = path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0
                                   ? path.substr(0, path.size() - 4) : path;
      path = stem + "." + std::to_string(j) + ".npy";
    }
    if (!xstream_host::WriteNpy(path, xstream_host::NpyDescr(DtypeName(t->type)), shape, outputs[j].data(),
                                outputs[j].size())) {
      fprintf(stderr, "cannot write %s\n", path.c_str());
      return 2;
    }
  }
  printf("%zu invoke(s) of %d frame(s) x %d utterance(s), %zu skipped by CIRCULAR_BUFFER; %zu output(s) in %s\n",
         steps, in->dims->data[1], utterances, skipped, written, out_path.c_str());
  return identical ? 0 : 3;
}

/* arena: the smallest arena size that works. Each try runs in a forked child (stdout and stderr to /dev/null):
   TFLite Micro does not check every allocation in every kernel's Prepare, so at some sizes just below the
   working one it crashes (a crash counts as a failure). Exit codes of a try: 0 works, 3 AllocateTensors (or the
   allocator) failed, 4 Invoke failed. The search doubles from 1 KiB until a size works, bisects to the byte, then
   checks above the answer (every 16 bytes for --band bytes, default 256, and a doubling ladder up to the first
   working size); a failure there restarts the bisection above it (reported as non_monotonic). */
constexpr int kTryOk = 0, kTryAllocFailed = 3, kTryInvokeFailed = 4;

int TryInChild(const std::string& path, size_t arena_bytes, bool invoke) {
  std::unique_ptr<Session> s(new Session());
  std::string error;
  if (!s->Load(path, arena_bytes, &error)) return kTryAllocFailed;
  if (!invoke) return kTryOk;
  tflm::MicroInterpreter& it = *s->interpreter;
  for (size_t i = 0; i < it.inputs_size(); ++i) {
    TfLiteTensor* t = it.input(i);
    if (t->data.raw != nullptr) memset(t->data.raw, 0, TensorBytes(t));
  }
  const TfLiteStatus status = it.Invoke();
  return status == kTfLiteOk || status == tflm::kTfLiteAbort ? kTryOk : kTryInvokeFailed;
}

struct ArenaProbe {
  std::string path;
  bool invoke = false;
  int tries = 0;
  std::vector<size_t> crashes;
  int last_code = 0;

  bool operator()(size_t arena_bytes) {
    ++tries;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      exit(2);
    }
    if (pid == 0) {
      const int null_fd = open("/dev/null", O_WRONLY);
      if (null_fd >= 0) {
        dup2(null_fd, STDOUT_FILENO);
        dup2(null_fd, STDERR_FILENO);
      }
      _exit(TryInChild(path, arena_bytes, invoke));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFSIGNALED(status)) {
      crashes.push_back(arena_bytes);
      last_code = -WTERMSIG(status);
      return false;
    }
    last_code = WEXITSTATUS(status);
    return last_code == kTryOk;
  }
};

void PrintList(const char* key, const std::vector<size_t>& values) {
  printf("%s", key);
  for (size_t v : values) printf(" %zu", v);
  printf("\n");
}

int Arena(const std::string& path, bool invoke, size_t max_arena, size_t band) {
  ArenaProbe works;
  works.path = path;
  works.invoke = invoke;
  std::vector<size_t> non_monotonic;
  size_t lo = 0, hi = 1024;
  while (!works(hi)) {
    lo = hi;
    if (hi >= max_arena) {
      // Say why, from a try in this process (it failed cleanly or crashed in the child).
      if (works.last_code < 0) {
        fprintf(stderr, "xstream_tflm_host arena: the runtime crashes (signal %d) with a %zu-byte arena\n",
                -works.last_code, hi);
        return 2;
      }
      Session s;
      std::string error;
      if (!s.Load(path, hi, &error)) {
        fprintf(stderr, "xstream_tflm_host arena: even %zu bytes fail: %s\n", hi, error.c_str());
      } else {
        fprintf(stderr, "xstream_tflm_host arena: Invoke fails (not an arena size problem)\n");
      }
      return 2;
    }
    hi = hi * 2 < max_arena ? hi * 2 : max_arena;
  }
  const size_t top = hi;
  for (;;) {
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      if (works(mid)) hi = mid;
      else lo = mid;
    }
    std::vector<size_t> checks;
    for (size_t n = hi + 16; n <= hi + band && n <= top; n += 16) checks.push_back(n);
    for (size_t step = band; hi + step < top; step *= 2) checks.push_back(hi + step);
    size_t failed = 0;
    for (size_t n : checks) {
      if (!works(n)) {
        failed = n;
        break;
      }
    }
    if (failed == 0) break;
    non_monotonic.push_back(failed);
    lo = failed;
    hi = top;
  }
  printf("arena_bytes %zu\n", hi);
  {
    Session s;  // the answer works, so this runs in-process
    std::string error;
    if (s.Load(path, hi, &error)) printf("arena_used_bytes %zu\n", s.interpreter->arena_used_bytes());
  }
  printf("invoke %d\ntries %d\n", invoke ? 1 : 0, works.tries);
  PrintList("crashes", works.crashes);
  PrintList("non_monotonic", non_monotonic);
  {
    // The RecordingMicroAllocator's breakdown (its own objects are larger: give it room).
    Session s;
    std::string error;
    if (s.Load(path, 2 * top + 65536, &error, /*record=*/true) && s.recording != nullptr) {
      static const struct {
        tflm::RecordedAllocationType type;
        const char* name;
      } kTypes[] = {
          {tflm::RecordedAllocationType::kTfLiteEvalTensorData, "recorded_eval_tensors"},
          {tflm::RecordedAllocationType::kPersistentTfLiteTensorData, "recorded_persistent_tensors"},
          {tflm::RecordedAllocationType::kPersistentTfLiteTensorQuantizationData, "recorded_persistent_quantization"},
          {tflm::RecordedAllocationType::kPersistentBufferData, "recorded_persistent_buffers"},
          {tflm::RecordedAllocationType::kTfLiteTensorVariableBufferData, "recorded_variable_buffers"},
          {tflm::RecordedAllocationType::kNodeAndRegistrationArray, "recorded_node_and_registrations"},
          {tflm::RecordedAllocationType::kOpData, "recorded_op_data"},
      };
      for (const auto& t : kTypes) {
        const tflm::RecordedAllocation a = s.recording->GetRecordedAllocation(t.type);
        printf("%s %zu %zu %zu\n", t.name, a.requested_bytes, a.used_bytes, a.count);
      }
      const auto* m = s.recording->GetSimpleMemoryAllocator();
      printf("head %zu\ntail %zu\nrecording_tail_overhead %zu\n", m->GetNonPersistentUsedBytes(),
             m->GetPersistentUsedBytes(), tflm::RecordingMicroAllocator::GetDefaultTailUsage());
    }
  }
  return 0;
}

/* time: see the header. steady_clock around Invoke() alone; the models take turns, invoke by invoke. */
int Time(std::vector<std::unique_ptr<Session>>& sessions, const std::vector<std::string>& paths, int runs) {
  const int warmup = std::max(runs / 10, 1);
  std::vector<std::vector<int64_t>> ns(sessions.size());
  std::vector<int> aborted(sessions.size(), 0);
  uint32_t seed = 12345;
  for (int k = 0; k < warmup + runs; ++k) {
    for (size_t m = 0; m < sessions.size(); ++m) {
      tflm::MicroInterpreter& it = *sessions[m]->interpreter;
      for (size_t i = 0; i < it.inputs_size(); ++i) {
        TfLiteTensor* t = it.input(i);
        uint8_t* p = reinterpret_cast<uint8_t*>(t->data.raw);
        for (size_t b = 0; b < TensorBytes(t); ++b) {
          seed = seed * 1664525u + 1013904223u;
          p[b] = static_cast<uint8_t>(seed >> 24);
        }
      }
      const auto start = std::chrono::steady_clock::now();
      const TfLiteStatus status = it.Invoke();
      const auto stop = std::chrono::steady_clock::now();
      if (status != kTfLiteOk && status != tflm::kTfLiteAbort) {
        fprintf(stderr, "Invoke failed: %s\n", paths[m].c_str());
        return 2;
      }
      if (k < warmup) continue;
      if (status == tflm::kTfLiteAbort) ++aborted[m];
      ns[m].push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count());
    }
  }
  for (size_t m = 0; m < sessions.size(); ++m) {
    std::vector<int64_t>& v = ns[m];
    std::sort(v.begin(), v.end());
    int64_t sum = 0;
    for (int64_t x : v) sum += x;
    const int64_t median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    printf("time %s %lld %lld %lld %zu %d\n", paths[m].c_str(), static_cast<long long>(median),
           static_cast<long long>(sum / static_cast<int64_t>(v.size())), static_cast<long long>(v.front()),
           v.size(), aborted[m]);
  }
  return 0;
}

int Usage() {
  fprintf(stderr,
          "usage: xstream_tflm_host info  MODEL [--arena BYTES]\n"
          "       xstream_tflm_host run   MODEL FRAMES.npy OUT.npy [--utterances K] [--arena BYTES]\n"
          "       xstream_tflm_host serve MODEL [--arena BYTES]\n"
          "       xstream_tflm_host time  MODEL [MODEL...] [--runs N] [--arena BYTES]\n"
          "       xstream_tflm_host arena MODEL [--invoke] [--max BYTES] [--band BYTES]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  const std::string command = argv[1];
  std::vector<std::string> positional;
  size_t arena = kDefaultArena;
  int utterances = 1, runs = 1000;
  bool invoke = false;
  size_t max_arena = size_t{1} << 30, band = 256;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--arena" || a == "--utterances" || a == "--max" || a == "--band" || a == "--runs") &&
        i + 1 < argc) {
      const long v = strtol(argv[++i], nullptr, 10);
      if (v < 1) return Usage();
      if (a == "--arena") arena = static_cast<size_t>(v);
      else if (a == "--max") max_arena = static_cast<size_t>(v);
      else if (a == "--band") band = static_cast<size_t>(v);
      else if (a == "--runs") runs = static_cast<int>(v);
      else utterances = static_cast<int>(v);
    } else if (a == "--invoke" && command == "arena") {
      invoke = true;
    } else {
      positional.push_back(a);
    }
  }
  if (command == "time") {
    if (positional.empty()) return Usage();
    std::vector<std::unique_ptr<Session>> sessions;
    for (const std::string& path : positional) {
      sessions.emplace_back(new Session());
      std::string error;
      if (!sessions.back()->Load(path, arena, &error)) {
        fprintf(stderr, "xstream_tflm_host: %s\n", error.c_str());
        return 2;
      }
    }
    return Time(sessions, positional, runs);
  }
  const size_t want = command == "run" ? 3 : 1;
  if (positional.size() != want ||
      (command != "run" && command != "serve" && command != "info" && command != "arena"))
    return Usage();
  if (command == "arena") return Arena(positional[0], invoke, max_arena, band);

  std::unique_ptr<Session> session(new Session());
  std::string error;
  if (!session->Load(positional[0], arena, &error)) {
    fprintf(stderr, "xstream_tflm_host: %s\n", error.c_str());
    return 2;
  }
  if (command == "info") {
    Describe(stdout, *session);
    return 0;
  }
  if (command == "serve") return Serve(*session);
  return Run(*session, positional[1], positional[2], utterances);
}
