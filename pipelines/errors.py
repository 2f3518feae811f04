"""The one error type a user sees, and the boundary that keeps every other one off the console.

A `SettleError` is the user's to fix: its message says what, where and why, and the command exits 1.
Anything else is a bug in Settle: the user gets one paragraph saying so and where the full
traceback was written, and the command exits BUG_EXIT, so scripts can tell the two apart.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import traceback
from pathlib import Path

# EX_SOFTWARE from sysexits.h: "an internal software error has been detected"
BUG_EXIT = 70


class SettleError(Exception):
    """Bad configuration, bad input or a refused operation. The CLI prints it and exits 1."""


def log_dir() -> Path:
    """Where bug tracebacks go: SETTLE_LOG_DIR, else settle-logs/ under the system temp dir."""
    return Path(os.environ.get("SETTLE_LOG_DIR") or Path(tempfile.gettempdir()) / "settle-logs")


def write_traceback(exc: BaseException, command: str) -> Path | None:
    """The full traceback in a new file; None if even that cannot be written (the caller then
    says so rather than fail a second time)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    text = "".join(traceback.format_exception(exc))
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"settle-{stamp}-", suffix=".log", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"settle {command}\n{text}")
        return Path(name)
    except OSError:
        return None


def bug_message(exc: BaseException, command: str, log: Path | None) -> str:
    """One paragraph for an unexpected exception: it is a bug, what it was, where to find more."""
    kind = type(exc).__name__
    first = (str(exc).splitlines() or [""])[0][:300]
    where = (
        f"The full traceback is in {log}."
        if log
        else "The traceback could not be written to a log file; rerun with --debug to see it."
    )
    return (
        f"internal error (a bug in Settle, not in your data): {kind}: {first}. {where} "
        "A run or close that had not committed was rolled back. Please report it with that file."
    )
