"""Send a job's output to its Snakemake log file.

Snakemake does not capture what a ``script:`` prints, so each workflow script wraps its work
in :func:`redirect_to`: stdout, stderr, warnings and the ``vadbench`` logger all go to the log.
A :class:`~vadbench.errors.VadbenchError` (bad input, which the message explains) becomes the
single line ``error: <message>`` in the log and on the job's real stderr, and the job exits
with status 2; any other exception is a bug and is written with its traceback, then propagates.
A job also ends cleanly when it is stopped from outside (:mod:`vadbench.lifetime`): SIGTERM and
SIGINT become an exception, and a job whose Snakemake process is gone stops itself.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import traceback
from pathlib import Path
from typing import Iterator

from vadbench.errors import VadbenchError

LOGGER_NAME = "vadbench"


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


_watching = False


def _watch_parent() -> None:
    """Stop this job (SIGTERM) when the Snakemake that started it is gone; one watcher per process."""
    global _watching
    from vadbench.lifetime import stop_when_orphaned

    if not _watching and threading.current_thread() is threading.main_thread():
        _watching = stop_when_orphaned() is not None


@contextlib.contextmanager
def redirect_to(log_path: str | Path) -> Iterator[None]:
    """Redirect stdout, stderr and the vadbench logger to ``log_path`` for the block.

    Raises:
        SystemExit: status 2 after a :class:`~vadbench.errors.VadbenchError`, whose message is
            the only line written for it (to the log and the real stderr).
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        # Our handler alone writes these records: a library that calls logging.basicConfig on
        # import (mlflow.pytorch does) would otherwise print each of them a second time.
        loggers = [get_logger(), logging.getLogger("py.warnings")]
        propagate = [each.propagate for each in loggers]
        for each in loggers:
            each.addHandler(handler)
            each.propagate = False
        loggers[0].setLevel(logging.INFO)
        logging.captureWarnings(True)
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = stream
        _watch_parent()
        from vadbench.lifetime import stop_on_signals

        try:
            with stop_on_signals():
                yield
        except VadbenchError as err:
            for out in (stream, old_err):
                print(f"error: {err}", file=out, flush=True)
            raise SystemExit(2) from None
        except (SystemExit, KeyboardInterrupt) as err:  # a signal (Terminated, Preempted) or Ctrl-C
            print(f"stopped: {err or type(err).__name__}", file=stream, flush=True)
            raise
        except BaseException:
            from vadbench.tracking import redact_uri  # an MLflow error quotes the URI, credentials too

            stream.write(redact_uri(traceback.format_exc()))
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err
            for each, before in zip(loggers, propagate):
                each.removeHandler(handler)
                each.propagate = before
