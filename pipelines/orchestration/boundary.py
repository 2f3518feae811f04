"""The CLI's error boundary for the Dagster assets: a clean failure, never a user-facing stack.

A `SettleError` becomes a `dg.Failure` carrying its paragraph (what the run page shows). Any other
exception is a bug: the failure says so and where its traceback was written, and carries the
traceback as metadata for whoever debugs it. Neither is retried: rerunning the same inputs fails
the same way.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator

import dagster as dg

from ..errors import SettleError, bug_message, write_traceback


@contextlib.contextmanager
def settle_failures(step: str) -> Iterator[None]:
    try:
        yield
    except dg.Failure:
        raise
    except SettleError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except Exception as exc:
        log = write_traceback(exc, f"(dagster) {step}")
        raise dg.Failure(
            description=bug_message(exc, step, log),
            metadata={"traceback": dg.MetadataValue.text("".join(traceback.format_exception(exc)))},
            allow_retries=False,
        ) from None
