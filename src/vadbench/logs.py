"""Send a job's output to its Snakemake log file.

Snakemake does not capture what a ``script:`` prints, so each workflow script wraps its work
in :func:`redirect_to`: stdout, stderr, warnings and the ``vadbench`` logger all go to the log,
and an error is written there with its traceback before it propagates to fail the job.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from pathlib import Path
from typing import Iterator

LOGGER_NAME = "vadbench"


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


@contextlib.contextmanager
def redirect_to(log_path: str | Path) -> Iterator[None]:
    """Redirect stdout, stderr and the vadbench logger to ``log_path`` for the block."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = get_logger()
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").addHandler(handler)
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = stream
        try:
            yield
        except BaseException:
            traceback.print_exc(file=stream)
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err
            logger.removeHandler(handler)
            logging.getLogger("py.warnings").removeHandler(handler)
