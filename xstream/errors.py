"""The one exception family xstream raises for bad input and models it cannot stream."""


class XstreamError(Exception):
    """Base of every error xstream reports to a user. The message is one line and says what to do."""

    exit_code = 1


class ModelReadError(XstreamError):
    """The input is not a readable TFLite model (missing, truncated, wrong identifier, out-of-range index)."""

    exit_code = 2


class UsageError(XstreamError):
    """An option or argument does not fit the model (bad hop, time axis out of range, output equals input)."""

    exit_code = 2


class StreamingRefused(XstreamError):
    """The model cannot be made streaming with exact results; the message names the operator and why."""

    exit_code = 1


class InterpreterError(XstreamError):
    """An interpreter rejected or failed on a model that xstream could read (invalid for that runtime)."""

    exit_code = 2



class InternalError(XstreamError):
    """A bug in xstream itself (not in the user's model): reported as such, never as a refusal."""

    exit_code = 3
