"""Dataset sources and layouts.

``fetch_source`` puts a dataset's source in place (the ``download`` rule); ``convert_source``
turns it into the canonical frame layout (the ``frames`` rule) with the layout module the
config names. Adding a layout means one module and one line in ``LAYOUTS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from vadbench.datasets import liu
from vadbench.datasets.canonical import SourceVideos, write_canonical
from vadbench.datasets.synthetic import SyntheticSpec, generate
from vadbench.errors import ConfigError, DatasetError
from vadbench.fileio import atomic_path

LAYOUTS: dict[str, Callable[[Path], SourceVideos]] = {"liu": liu.read}


def fetch_source(name: str, dataset: dict[str, Any], out_dir: str | Path) -> Path:
    """Put dataset ``name``'s source under ``out_dir``.

    ``source: synthetic`` generates the built-in dataset from the ``synthetic`` block; a local
    folder is linked in place so nothing large is copied.
    """
    out_dir = Path(out_dir)
    source = dataset["source"]
    with atomic_path(out_dir) as tmp:
        if source == "synthetic":
            generate(tmp, SyntheticSpec(**dataset.get("synthetic", {})), name=name)
        else:
            folder = Path(source).expanduser().resolve()
            if not folder.is_dir():
                raise DatasetError(
                    f"datasets.{name}.source = {source!r}: no such folder. Point it at the extracted dataset."
                )
            tmp.mkdir()
            (tmp / "data").symlink_to(folder, target_is_directory=True)
    return out_dir


def convert_source(source_dir: str | Path, layout: str, out_dir: str | Path) -> dict:
    """Read the source in ``layout`` and write the canonical frame layout to ``out_dir``."""
    try:
        reader = LAYOUTS[layout]
    except KeyError:
        raise ConfigError(f"unknown layout {layout!r}; known layouts: {', '.join(sorted(LAYOUTS))}") from None
    source_dir = Path(source_dir)
    linked = source_dir / "data"
    return write_canonical(reader(linked if linked.is_dir() else source_dir), out_dir)
