"""Which data a model was trained on, so a checkpoint or model is never reused for other data.

The run config says how a model is trained, not on what. Arrays decoded again from another copy
of the dataset (a re-download, another source, a different layout) leave the config unchanged;
a checkpoint trusted on its config alone would "resume" after its last epoch and hand the old
weights on as the new model, and its AUC would look valid. A *data fingerprint* names the two
inputs that training and scoring read:

    resources/<dataset>/<preset>/
    ├── arrays/manifest.json   frame size, channels, frames per video, the size and SHA-256 of
    │                          every <split>/<video>.npy (computed once, by decode_videos) and
    │                          the sources (archive, SHA-256) the frames were converted from
    └── clips.npz              the clip index

``digest`` is the SHA-256 over the digests of those two parts (the manifest's source locations
left out: an archive moved elsewhere is the same data). Every checkpoint and model.pt
records the fingerprint; training resumes only from a checkpoint of the same digest and scoring
refuses a model of another one.

Pitfalls handled: ``np.savez`` stamps the time into the zip, so the index is hashed by content
(key, dtype, shape, bytes of each array), not by file bytes, and rebuilding an identical index
keeps the digest. Building a fingerprint reads the manifest and the index and stats every array
file, whose size must be the one the manifest recorded (a swapped or truncated file is refused);
it never re-reads the arrays, so it costs milliseconds even for ShanghaiTech. ``verify="full"``
also re-hashes every array against the manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from vadbench.errors import DatasetError
from vadbench.logs import get_logger

log = get_logger("fingerprint")

PARTS = {"arrays_manifest": "arrays manifest", "index": "clip index", "flow_manifest": "flow manifest"}


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def index_digest(index_path: str | Path) -> str:
    """SHA-256 of the clip index's content: every array's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256()
    try:
        with np.load(index_path) as data:
            for key in sorted(data.files):
                array = np.ascontiguousarray(data[key])
                digest.update(_canonical([key, array.dtype.str, list(array.shape)]))
                digest.update(array.tobytes())
    except (OSError, ValueError) as err:
        raise DatasetError(
            f"{index_path}: cannot read the clip index ({err}). Delete it and rerun the index rule."
        ) from None
    return digest.hexdigest()


def check_arrays(arrays_dir: str | Path, manifest: dict[str, Any], verify: str = "size", rule: str = "resize") -> None:
    """Raise :class:`DatasetError` unless every array file has the size (``verify="full"``: also
    the SHA-256) that ``manifest`` recorded when it was decoded."""
    arrays_dir = Path(arrays_dir)
    recorded = manifest.get("arrays")
    if recorded is None:
        log.warning(
            "%s records no checksums of its arrays (decoded by an older vadbench): a file replaced by hand "
            "goes unnoticed; run `snakemake --forcerun resize` to record them",
            arrays_dir / "manifest.json",
        )
        return
    for split, videos in manifest["splits"].items():
        for video in videos:
            path = arrays_dir / split / f"{video}.npy"
            expected = recorded.get(split, {}).get(video)
            if expected is None:
                raise DatasetError(
                    f"{arrays_dir / 'manifest.json'} lists video {split}/{video} but no checksum of "
                    f"{path}. Delete {arrays_dir} and rerun (snakemake --forcerun {rule})."
                )
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise DatasetError(
                    f"{path} is missing ({arrays_dir / 'manifest.json'} lists it). "
                    f"Delete {arrays_dir} and rerun (snakemake --forcerun {rule})."
                ) from None
            found = f"{size} bytes" if size != expected["bytes"] else None
            if found is None and verify == "full" and file_sha256(path) != expected["sha256"]:
                found = "other bytes"
            if found:
                raise DatasetError(
                    f"{path}: {found}, but {arrays_dir / 'manifest.json'} recorded {expected['bytes']} bytes with SHA-256 "
                    f"{expected['sha256'][:12]} when it was decoded; the file was replaced or truncated since. "
                    f"Delete {arrays_dir} and rerun (snakemake --forcerun {rule})."
                )


def _read_manifest(directory: Path, rule: str) -> dict[str, Any]:
    path = directory / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(
            f"{path}: cannot read the manifest ({err}). Delete {directory} and rerun (snakemake --forcerun {rule})."
        ) from None


def data_fingerprint(
    arrays_dir: str | Path, index_path: str | Path, verify: str = "size", flow_dir: str | Path | None = None
) -> dict[str, Any]:
    """The fingerprint of decoded arrays plus their clip index, as plain data for a checkpoint.

    Args:
        arrays_dir: ``decode_videos`` output, with its ``manifest.json``.
        index_path: ``build_index`` output (.npz).
        verify: ``"size"`` stats each array file against the manifest; ``"full"`` re-hashes them.
        flow_dir: ``flow_videos`` output (AMMC-Net), whose manifest and arrays join the
            fingerprint the same way; ``None`` for models that read no flow.

    Returns:
        ``{"digest", "arrays_manifest", "index", "sources"}`` (and ``"flow_manifest"`` given a
        ``flow_dir``): hex SHA-256 digests, and the sources the frames came from (a list of
        ``{"source", "sha256"}``, or ``None`` if unknown).
    """
    manifest = _read_manifest(Path(arrays_dir), "resize")
    check_arrays(arrays_dir, manifest, verify)
    # where a source lives is no part of the data: moving the archive must not look like new data
    content = {**manifest, "sources": [s.get("sha256") for s in manifest.get("sources") or []]}
    parts = {"arrays_manifest": hashlib.sha256(_canonical(content)).hexdigest(), "index": index_digest(index_path)}
    if flow_dir is not None:
        flow = _read_manifest(Path(flow_dir), "flow")
        check_arrays(flow_dir, flow, verify, rule="flow")
        parts["flow_manifest"] = hashlib.sha256(_canonical(flow)).hexdigest()
    return {"digest": hashlib.sha256(_canonical(parts)).hexdigest(), **parts, "sources": manifest.get("sources")}


def describe(fingerprint: dict[str, Any]) -> str:
    """One line for a log or an error: ``data 1a2b3c4d5e6f (arrays manifest ..., clip index ..., source ...)``."""
    parts = [f"{label} {fingerprint[key][:12]}" for key, label in PARTS.items() if fingerprint.get(key)]
    for source in fingerprint.get("sources") or []:
        sha = source.get("sha256")
        parts.append(
            f"source {Path(str(source.get('source'))).name} {'SHA-256 ' + sha[:12] if sha else '(no checksum)'}"
        )
    return f"data {fingerprint['digest'][:12]} ({', '.join(parts)})"


def difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Which parts of two fingerprints differ: ``arrays manifest 1a2b.. -> 3c4d.., clip index unchanged``."""
    said = []
    for key, label in PARTS.items():
        a, b = old.get(key) or "none", new.get(key) or "none"
        if a == b == "none":
            continue
        said.append(f"{label} {a[:12]} -> {b[:12]}" if a != b else f"{label} unchanged")
    return ", ".join(said)
