"""Bounds the reader and the graph checks enforce on any model, so hostile files fail fast and small."""

MAX_FILE_BYTES = 1 << 32  # a flatbuffer addresses 2 GiB; external buffers may follow it
MAX_ELEMENTS = 1 << 28  # elements in one tensor
MAX_TENSOR_BYTES = 1 << 30  # bytes in one tensor
MAX_RANK = 16  # dimensions of one tensor
MAX_ACTIVATION_BYTES = 1 << 32  # bytes of all non-constant tensors of a model together
MAX_CALL_DEPTH = 64  # nesting of subgraph calls (CALL_ONCE, IF, WHILE, ...)
