"""Follow time through a model and plan its state: `analyze(model) -> StreamPlan`. Reads the model, changes nothing."""

from .plan import CAUSAL, WINDOW_EXACT, Reader, Slide, State, StreamPlan, TimeInfo
from .time_walk import analyze, map_axis, op_index

__all__ = ["CAUSAL", "WINDOW_EXACT", "Reader", "Slide", "State", "StreamPlan", "TimeInfo", "analyze", "map_axis",
           "op_index"]
