"""Where a dataset comes from: a URL, a local archive, a local folder, or the synthetic generator.

The ``download`` rule calls :func:`fetch_source`, which leaves ``resources/<name>/source/``
holding ``source.json`` and a link named ``data`` to the archive or folder. Downloads go to
``resources/<name>/download/<file>`` (outside the rule's output, so a rerun never downloads
again), through a temporary file renamed on success.

Archives are verified against the configured SHA-256 every time a job opens them
(:func:`open_archive`), not only after a download, and before anything is extracted.
Extraction refuses members with absolute paths, ``..`` components, links that point outside
the target and special files, checking every member before writing the first one.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from vadbench.errors import DatasetError
from vadbench.fileio import atomic_path, read_json, write_json
from vadbench.logs import get_logger

log = get_logger("sources")

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
_CHUNK = 1 << 20


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str | None) -> str:
    """Return the file's SHA-256; raise naming both digests if it differs from ``expected``."""
    actual = sha256_of(path)
    if expected and actual != expected.lower():
        raise DatasetError(
            f"{path}: SHA-256 mismatch: expected {expected}, got {actual}. The file is corrupt, truncated "
            "or a different release: delete it and download it again (or fix datasets.<name>.sha256)."
        )
    return actual


def download(url: str, target: Path, expected_sha256: str | None, name: str) -> Path:
    """Download ``url`` to ``target`` (temporary file, renamed when complete and verified)."""
    if target.exists():
        verify_checksum(target, expected_sha256)
        log.info("%s already downloaded and verified", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    log.info("downloading %s -> %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, last = 0, 0.0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - last > 5:
                    last = time.monotonic()
                    of = f" of {total / 1e6:.1f} MB ({100 * done / total:.0f}%)" if total else ""
                    log.info("downloaded %.1f MB%s", done / 1e6, of)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        raise DatasetError(
            f"cannot download {url} ({err}). Download it by hand from {url} and put it at {target.resolve()} "
            f"(or anywhere, and set datasets.{name}.source to that path); it is verified against "
            f"datasets.{name}.sha256 before use."
        ) from None
    try:
        verify_checksum(part, expected_sha256)
    except DatasetError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    return target


def _missing_help(layout: str) -> str:
    """A layout module's ``MISSING_SOURCE_HELP`` (how to obtain a dataset that cannot be downloaded)."""
    try:
        module = importlib.import_module(f"vadbench.datasets.{layout}")
    except ImportError:
        return ""
    help_text = getattr(module, "MISSING_SOURCE_HELP", "")
    return f"\n{help_text}" if help_text else ""


def _place(name: str, source: str, sha: str | None, resources: Path, layout: str = "") -> tuple[str, Path]:
    """Download or locate one source; returns ``(kind, path)`` with kind ``archive`` or ``folder``."""
    if is_url(source):
        filename = PurePosixPath(urllib.request.urlparse(source).path).name or f"{name}.archive"
        return "archive", download(source, resources / name / "download" / filename, sha, name).resolve()
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise DatasetError(
            f"datasets.{name}.source = {source!r}: no such file or folder ({path}). Point it at the "
            "dataset's archive or extracted folder." + _missing_help(layout)
        )
    if path.is_dir():
        return "folder", path
    if not is_archive(path):
        raise DatasetError(f"{path}: not a supported archive ({', '.join(ARCHIVE_SUFFIXES)})")
    verify_checksum(path, sha)
    return "archive", path


def fetch_source(name: str, dataset: dict[str, Any], out_dir: str | Path, resources: str | Path = "resources") -> Path:
    """Put dataset ``name``'s source in place under ``out_dir`` (see the module docstring).

    ``out_dir/data`` links to the main source, ``out_dir/extra<i>`` to each of
    ``extra_sources`` (archives unpacked beside the main one, like Avenue's ground truth).
    """
    from vadbench.datasets.synthetic import SyntheticSpec, generate

    out_dir = Path(out_dir)
    entries = [{"source": str(dataset["source"]), "sha256": dataset.get("sha256")}, *dataset.get("extra_sources", [])]
    record = []
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for i, entry in enumerate(entries):
            link = tmp / ("data" if i == 0 else f"extra{i}")
            if entry["source"] == "synthetic":
                generate(link, SyntheticSpec(**dataset.get("synthetic", {})), name=name)
                kind, path = "synthetic", link.name
            else:
                kind, real = _place(name, entry["source"], entry.get("sha256"), Path(resources), dataset.get("layout", ""))
                link.symlink_to(real, target_is_directory=real.is_dir())
                path = str(real)
            record.append({"link": link.name, "kind": kind, "source": entry["source"], "path": path,
                           "sha256": entry.get("sha256")})
        write_json(tmp / "source.json", {"dataset": name, "sources": record})
    return out_dir


def _check_member(archive: Path, name: str, target: Path, link: str | None = None, hard: bool = False) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DatasetError(
            f"{archive}: member {name!r} has an absolute path or '..'; refusing to extract an archive that "
            "could write outside its folder. Get the dataset from its official source."
        )
    if link is not None:
        root = target.resolve()
        # a symlink resolves from its own folder, a hard link from the archive's root
        resolved = Path(os.path.normpath(root / (PurePosixPath() if hard else path.parent) / link))
        if not link or link.startswith("/") or not str(resolved).startswith(str(root) + os.sep):
            raise DatasetError(f"{archive}: member {name!r} links to {link!r}, outside the extraction folder; refusing")


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into ``target`` after checking every member (see module docstring)."""
    target.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member(archive, info.filename, target)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DatasetError(f"archive member {info.filename!r} is a symbolic link: refusing to extract {archive}")
            zf.extractall(target)
        return target
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_member(archive, m.name, target, m.linkname if (m.issym() or m.islnk()) else None, m.islnk())
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise DatasetError(f"archive member {m.name!r} is a device or special file: refusing to extract {archive}")
            tf.extractall(target, members=members, filter="data")
    except tarfile.TarError as err:
        raise DatasetError(f"{archive}: cannot read the archive ({err}). Delete it and download it again.") from None
    return target


def open_source(source_dir: str | Path, scratch: Path) -> Path:
    """The folder to read a fetched source from.

    Archives are verified again and extracted into ``scratch`` (extra sources beside the main
    one); a folder source is read in place unless extra archives must join it.
    """
    source_dir = Path(source_dir)
    if source_dir.is_file():
        return safe_extract(source_dir, scratch)
    if not (source_dir / "source.json").exists():
        return source_dir
    entries = read_json(source_dir / "source.json")["sources"]
    if len(entries) == 1 and entries[0]["kind"] != "archive":
        return source_dir / entries[0]["link"]
    scratch.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        linked = (source_dir / entry["link"]).resolve()
        if entry["kind"] == "archive":
            verify_checksum(linked, entry.get("sha256"))
            log.info("extracting %s", linked)
            safe_extract(linked, scratch)
        else:
            (scratch / linked.name).symlink_to(linked, target_is_directory=True)
    return scratch
