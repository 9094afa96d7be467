"""How the command line reports a failure: one line, an exit code, no traceback.

``medsymmflow <command>: error: <what went wrong and what to do>`` on stderr, and the exit code

* 1: a runtime failure - damaged or unreachable data or checkpoint files, a disk that cannot be
  written, a loss that became NaN, memory exhausted, or anything unexpected;
* 2: a usage error - a bad argument or configuration, a path that does not exist, a run that
  would be overwritten;
* 130: interrupted (Ctrl-C); training says which step its last checkpoint holds.

``--debug`` or ``MEDSYMMFLOW_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG_ENV = "MEDSYMMFLOW_DEBUG"
RUNTIME, USAGE, INTERRUPTED = 1, 2, 130
USAGE_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)
OUT_OF_MEMORY = (
    "out of memory{detail}. Lower --batch-size (or evaluate fewer images at once), "
    "or free memory held by other programs."
)


class NonFiniteError(FloatingPointError):
    """A loss, the weights or the model's outputs became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the message says where it stopped, what is saved and what to do."""


def debug_enabled(flag: bool = False) -> bool:
    """``--debug`` given, or ``MEDSYMMFLOW_DEBUG`` set to anything but empty or 0."""
    return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def classify(error: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for ``error``."""
    text = " ".join(str(error).split())
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED, text if isinstance(error, TrainingInterrupted) else "interrupted"
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":  # torch's, without importing it
        return RUNTIME, OUT_OF_MEMORY.format(detail=f" ({text})" if text else "")
    if isinstance(error, USAGE_ERRORS):
        return USAGE, text
    from medsymmflow.checkpoints import CheckpointError
    from medsymmflow.data import DataError

    if isinstance(error, (CheckpointError, DataError, NonFiniteError, OSError)):
        return RUNTIME, text
    return RUNTIME, f"unexpected {type(error).__name__}: {text} (run again with --debug for the traceback)"


def report_errors(command: str, run: Callable[[], int], debug: bool = False) -> int:
    """``run()``'s exit code, or, if it raises, the error's code after printing its one line."""
    try:
        return run()
    except (Exception, KeyboardInterrupt) as error:
        if debug_enabled(debug):
            raise
        code, message = classify(error)
        print(f"medsymmflow {command}: error: {message}", file=sys.stderr, flush=True)
        return code
