"""The one exception family xstream raises, each class with the exit code and kind the CLI reports for it.

Exit codes (every command): 0 ok / equal; 1 refused (convert: the model cannot be streamed exactly) or different
(verify); 2 bad input or usage; 3 could not run (a runtime or compiler failed or is missing); 4 internal error
(a bug in xstream). `EXIT_CODES` is that table, for --help and the README.
"""

EXIT_CODES = {
    0: "ok (verify: equal)",
    1: "refused: the model cannot be streamed exactly (verify: the models differ)",
    2: "bad input or usage (unreadable model, options that do not fit, nothing to compare, swapped arguments)",
    3: "could not run: a runtime or compiler failed on the model or is missing (the message names the op)",
    4: "internal error: a bug in xstream (rerun with --debug and report it)",
}


class XstreamError(Exception):
    """Base of every error xstream reports to a user. The message is one line and says what to do."""

    exit_code = 2
    kind = "error"


class ModelReadError(XstreamError):
    """The input is not a readable TFLite model (missing, truncated, wrong identifier, out-of-range index)."""

    exit_code = 2
    kind = "unreadable"


class UsageError(XstreamError):
    """An option or argument does not fit the model (bad hop, time axis out of range, output equals input)."""

    exit_code = 2
    kind = "usage"


class StreamingRefused(XstreamError):
    """The model cannot be made streaming with exact results; the message names the operator and why."""

    exit_code = 1
    kind = "refused"


class InterpreterError(XstreamError):
    """A runtime or compiler could not run a model xstream could read (rejected it, crashed, lacks a kernel),
    or is not installed."""

    exit_code = 3
    kind = "could-not-run"


class InternalError(XstreamError):
    """A bug in xstream itself (not in the user's model): reported as such, never as a refusal."""

    exit_code = 4
    kind = "internal"
