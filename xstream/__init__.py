"""xstream: rewrite a non-streaming TFLite time-series model into a streaming one with ring-buffer state."""

from .errors import XstreamError
from .ir import Buffer, Model, Operator, Quantization, Subgraph, Tensor
from .pipeline import convert
from .reader import load
from .writer import save, serialize

__version__ = "0.1.0"

__all__ = ["XstreamError", "Buffer", "Model", "Operator", "Quantization", "Subgraph", "Tensor",
           "convert", "load", "save", "serialize", "__version__"]
