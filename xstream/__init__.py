"""xstream: rewrite a non-streaming TFLite time-series model into a streaming one with ring-buffer state."""

from .errors import XstreamError
from .ir import Buffer, Model, Operator, Quantization, Subgraph, Tensor
from .pipeline import convert
from .report.stream_info import read as stream_info
from .tflite.reader import load
from .tflite.writer import save, serialize
from .verify import verify
from .version import __version__

__all__ = ["XstreamError", "Buffer", "Model", "Operator", "Quantization", "Subgraph", "Tensor",
           "convert", "load", "save", "serialize", "stream_info", "verify", "__version__"]
