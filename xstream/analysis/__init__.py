"""Follow time through a model and plan its state: `analyze(model) -> StreamPlan`. Reads the model, changes nothing."""

from .plan import CAUSAL, WINDOW_EXACT, Reader, Slide, State, StreamPlan, TimeInfo
from .time_axis import TimeAxis, find_time_axis, frame_of
from .time_walk import analyze, map_axis, op_index

__all__ = ["CAUSAL", "WINDOW_EXACT", "Reader", "Slide", "State", "StreamPlan", "TimeAxis", "TimeInfo", "analyze",
           "find_time_axis", "frame_of", "map_axis", "op_index"]
