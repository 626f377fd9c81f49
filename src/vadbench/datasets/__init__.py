"""Dataset sources and layouts.

``fetch_source`` puts a dataset's source in place (the ``download`` rule); ``convert_source``
turns it into the canonical frame layout (the ``frames`` rule) with the layout module the
config names. Adding a layout means one module and one line in ``LAYOUTS``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from vadbench.datasets import avenue, liu, shanghaitech, ucsd
from vadbench.datasets.canonical import SourceVideos, write_canonical
from vadbench.datasets.sources import ArchiveLimits, fetch_source, open_source, sha256_of
from vadbench.datasets.ucsd_labels import LABEL_SOURCES, apply_label_source
from vadbench.errors import ConfigError
from vadbench.fileio import read_json

__all__ = ["LAYOUTS", "convert_source", "fetch_source", "source_provenance"]

# layout name -> reader(root, workdir, **options): root is the extracted source, workdir a
# scratch folder (deleted afterwards) where a reader may decode videos into frame files.
LAYOUTS: dict[str, Callable[..., SourceVideos]] = {
    "avenue": avenue.read,
    "liu": liu.read,
    "shanghaitech": shanghaitech.read,
    "ucsd": ucsd.read,
}


def convert_source(
    source_dir: str | Path,
    layout: str,
    out_dir: str | Path,
    options: dict | None = None,
    archive_limits: ArchiveLimits | dict | None = None,
    label_source: str = "archive",
) -> dict:
    """Read the source in ``layout`` and write the canonical frame layout to ``out_dir``.

    ``source_dir`` is a ``download`` rule output, or directly an extracted folder or an archive.
    ``options`` are the dataset's ``layout_options`` (e.g. which UCSD scene to take);
    ``archive_limits`` the config's ``archives`` caps on extraction; ``label_source`` the
    dataset's key of that name (``archive``: the dataset's own label files; ``ucsd_official``:
    the UCSD ``.m`` intervals, :mod:`vadbench.datasets.ucsd_labels`), recorded in the manifest
    with the file the labels came from. The manifest's ``sources`` names what the frames were
    made from, with each archive's SHA-256, so that a result can be traced back to the exact
    files (see :func:`source_provenance`).
    """
    try:
        reader = LAYOUTS[layout]
    except KeyError:
        raise ConfigError(f"unknown layout {layout!r}; known layouts: {', '.join(sorted(LAYOUTS))}") from None
    if label_source not in LABEL_SOURCES:
        raise ConfigError(f"label_source {label_source!r} is not known; use one of {', '.join(LABEL_SOURCES)}")
    out_dir = Path(out_dir)
    scratch = out_dir.with_name(f".{out_dir.name}.scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        root = open_source(source_dir, scratch / "extracted", archive_limits)
        (scratch / "work").mkdir(parents=True)
        source = reader(root, scratch / "work", **(options or {}))
        apply_label_source(source, label_source, layout, (options or {}).get("scene"))
        return write_canonical(source, out_dir, provenance=source_provenance(source_dir), label_source=label_source)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def source_provenance(source_dir: str | Path) -> list[dict]:
    """``[{"source", "sha256"}, ...]`` of a ``download`` output (its ``source.json``), an archive or a folder.

    The digest is the one every job verified the archive against; ``None`` for the synthetic
    generator and for folders, which have no single digest.
    """
    source_dir = Path(source_dir)
    if source_dir.is_file():
        return [{"source": str(source_dir), "sha256": sha256_of(source_dir)}]
    if not (source_dir / "source.json").exists():
        return [{"source": str(source_dir), "sha256": None}]
    return [
        {"source": e["source"], "sha256": e.get("sha256")} for e in read_json(source_dir / "source.json")["sources"]
    ]
