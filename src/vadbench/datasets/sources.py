"""Where a dataset comes from: a URL, a local archive, a local folder, or the synthetic generator.

The ``download`` rule calls :func:`fetch_source`, which leaves ``resources/<name>/source/``
holding ``source.json`` and a link named ``data`` to the archive or folder. Downloads go to
``resources/<name>/download/<file>`` (outside the rule's output, so a rerun never downloads
again), through a temporary file renamed on success.

Integrity: a URL source must pin its SHA-256 (the config check and :func:`download` both refuse
one without), so plain ``http://`` mirrors are safe to use. A local archive without a pinned
digest has it computed once, logged with a warning that suggests pinning it, and recorded in
``source.json``. Every later job verifies the archive against the recorded digest
(:func:`open_source`) before anything is extracted.

Extraction (:func:`safe_extract`) lists every member before writing the first one, and refuses:

- absolute paths and ``..`` components;
- every symbolic and hard link, whatever it points to: no dataset needs one, and a chain of
  links whose resolved path exceeds ``PATH_MAX`` walks past Python's own ``filter="data"``
  (CVE-2025-4517; any link check that reads path text is defeated the same way);
- devices, FIFOs and other special files;
- archives that would expand beyond :class:`ArchiveLimits` (total declared size, member count,
  ratio of declared size to archive size): decompression bombs fail before the disk fills.

A member cannot write more than its declared size: ``tarfile`` copies exactly ``size`` bytes and
``zipfile`` stops at ``file_size`` and fails on the CRC, so the declared total bounds the disk used.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from vadbench.errors import DatasetError
from vadbench.fileio import atomic_path, read_json, write_json
from vadbench.logs import get_logger

log = get_logger("sources")

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
_CHUNK = 1 << 20
DIGEST_HELP = "print a file's digest with `sha256sum FILE` (macOS: `shasum -a 256 FILE`)"


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what one archive may expand to, checked from its member list before extraction.

    The defaults accept every shipped dataset with room to spare (Ped2 ~ 100 MB and ~ 4,600
    members, Avenue ~ 2 GB, ShanghaiTech as frames some tens of GB and ~ 320k members; JPEG and
    TIFF frames compress 1-3x) and stop a decompression bomb, whose ratio is 1000x and more.
    Config key ``archives`` overrides them (config/README.md).
    """

    max_total_bytes: int = 200 * 10**9  # sum of the members' declared sizes
    max_members: int = 2_000_000
    max_ratio: float = 100.0  # declared total / archive size on disk

    # Below this total no ratio is too high: it cannot fill a disk, and small ground-truth files
    # (binary masks, .mat label volumes) compress far better than video frames.
    RATIO_FLOOR = 1 << 24

    @classmethod
    def of(cls, limits: "ArchiveLimits | dict | None") -> "ArchiveLimits":
        """``limits`` as given, from the config's ``archives`` mapping, or the defaults for ``None``."""
        if isinstance(limits, cls):
            return limits
        return cls(**(limits or {}))


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


def download(url: str, target: Path, expected_sha256: str | None, name: str, key: str = "") -> Path:
    """Download ``url`` to ``target`` (temporary file, renamed when complete and verified).

    ``expected_sha256`` is required: without it a tampered mirror or a man in the middle (the
    official Ped2 and Avenue servers speak plain http) would go unnoticed. ``key`` is the
    config key of the digest, for the message (default ``datasets.<name>.sha256``).
    """
    if not expected_sha256:
        key = key or f"datasets.{name}.sha256"
        raise DatasetError(
            f"{key}: {url} is downloaded but has no SHA-256 pinned, so a tampered or substituted file would "
            f"be used unnoticed. Download the file once, {DIGEST_HELP}, and set {key}: <digest>."
        )
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


def _place(name: str, source: str, sha: str | None, resources: Path, layout: str = "",
           key: str = "") -> tuple[str, Path, str | None]:
    """Download or locate one source; returns ``(kind, path, sha256)``, kind ``archive`` or ``folder``.

    An archive's digest is the pinned one, or for a local archive without one the digest
    computed now (with a warning), so that later jobs still verify the file they extract.
    ``key`` is the config key of the digest, for messages.
    """
    key = key or f"datasets.{name}.sha256"
    if is_url(source):
        filename = PurePosixPath(urllib.request.urlparse(source).path).name or f"{name}.archive"
        return "archive", download(source, resources / name / "download" / filename, sha, name, key).resolve(), sha
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise DatasetError(
            f"datasets.{name}.source = {source!r}: no such file or folder ({path}). Point it at the "
            "dataset's archive or extracted folder." + _missing_help(layout)
        )
    if path.is_dir():
        return "folder", path, None
    if not is_archive(path):
        raise DatasetError(f"{path}: not a supported archive ({', '.join(ARCHIVE_SUFFIXES)})")
    actual = verify_checksum(path, sha)
    if not sha:
        log.warning(
            "%s: no SHA-256 pinned; its digest %s is recorded in source.json and every later job verifies "
            "the archive against it. Pin it in the config so a changed file is caught on the next download "
            "job too: %s: %s", path, actual, key, actual,
        )
    return "archive", path, actual


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
                kind, path, sha = "synthetic", link.name, None
            else:
                key = f"datasets.{name}." + ("sha256" if i == 0 else f"extra_sources.{i - 1}.sha256")
                kind, real, sha = _place(name, entry["source"], entry.get("sha256"), Path(resources),
                                         dataset.get("layout", ""), key)
                link.symlink_to(real, target_is_directory=real.is_dir())
                path = str(real)
            record.append({"link": link.name, "kind": kind, "source": entry["source"], "path": path,
                           "sha256": sha})
        write_json(tmp / "source.json", {"dataset": name, "sources": record})
    return out_dir


def _check_path(archive: Path, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DatasetError(
            f"{archive}: member {name!r} has an absolute path or '..'; refusing to extract an archive that "
            "could write outside its folder. Get the dataset from its official source."
        )


def _refuse_link(archive: Path, name: str, kind: str, link: str | None = None) -> None:
    to = f" to {link!r}" if link is not None else ""
    raise DatasetError(
        f"{archive}: member {name!r} is a {kind}{to}; refusing to extract the archive. vadbench extracts no "
        "links at all: no dataset needs one, and links are how an archive writes outside its folder "
        "(CVE-2025-4517). Get the dataset from its official source."
    )


class _Budget:
    """Running totals of an archive's members against :class:`ArchiveLimits`.

    Checked member by member, so a bomb fails at the header that crosses a limit, without
    reading (or decompressing) the rest of its member list.
    """

    def __init__(self, archive: Path, limits: ArchiveLimits):
        self.archive, self.limits = archive, limits
        self.size = max(archive.stat().st_size, 1)
        self.members = self.total = 0

    def add(self, name: str, size: int) -> None:
        self.members += 1
        self.total += max(size, 0)
        a, lim = self.archive, self.limits
        if self.members > lim.max_members:
            raise DatasetError(
                f"{a}: holds more than {lim.max_members:,} members (archives.max_members); refusing to extract "
                "it, since an archive bomb creates files until the disk runs out of them. If this is the real "
                "dataset, raise archives.max_members in the config."
            )
        if self.total > lim.max_total_bytes:
            raise DatasetError(
                f"{a}: its members declare more than {lim.max_total_bytes:,} bytes (archives.max_total_bytes; "
                f"{self.total:,} up to member {name!r}); refusing to extract it before the disk fills. If this "
                "is the real dataset and the disk has room, raise archives.max_total_bytes in the config."
            )
        if self.total > lim.RATIO_FLOOR and self.total > lim.max_ratio * self.size:
            raise DatasetError(
                f"{a}: {self.size:,} bytes expand to at least {self.total:,} ({self.total / self.size:.0f}x, above "
                f"archives.max_ratio = {lim.max_ratio:g}; video frames compress 1-3x): a decompression bomb, "
                "not a dataset; refusing to extract it. If this is the real dataset, raise archives.max_ratio."
            )


def _zip_members(archive: Path, zf: zipfile.ZipFile, limits: ArchiveLimits) -> None:
    budget = _Budget(archive, limits)
    for info in zf.infolist():
        _check_path(archive, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when written without Unix modes
        if kind == stat.S_IFLNK:
            _refuse_link(archive, info.filename, "symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise DatasetError(f"{archive}: member {info.filename!r} is a device or special file; refusing to extract it")
        budget.add(info.filename, info.file_size)


def _tar_members(archive: Path, tf: tarfile.TarFile, limits: ArchiveLimits) -> list[tarfile.TarInfo]:
    budget = _Budget(archive, limits)
    members = []
    for m in tf:  # one header at a time: a limit stops the listing where it is crossed
        _check_path(archive, m.name)
        if m.issym() or m.islnk():
            _refuse_link(archive, m.name, "symbolic link" if m.issym() else "hard link", m.linkname)
        if not (m.isfile() or m.isdir()):
            raise DatasetError(f"{archive}: member {m.name!r} is a device or special file; refusing to extract it")
        budget.add(m.name, m.size if m.isfile() else 0)
        members.append(m)
    return members


def safe_extract(archive: Path, target: Path, limits: ArchiveLimits | dict | None = None) -> Path:
    """Extract ``archive`` into ``target`` after checking every member (see the module docstring).

    Args:
        limits: caps on the expanded size, the member count and the ratio (config ``archives``);
            the :class:`ArchiveLimits` defaults when ``None``.

    Raises:
        DatasetError: naming the archive and the member at fault; ``target`` is not created
            (nor written to, if it exists) when a check fails.
    """
    limits = ArchiveLimits.of(limits)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                _zip_members(archive, zf, limits)
                target.mkdir(parents=True, exist_ok=True)
                zf.extractall(target)  # stops at each file_size and checks the CRC
            return target
        with tarfile.open(archive) as tf:
            members = _tar_members(archive, tf, limits)
            target.mkdir(parents=True, exist_ok=True)
            tf.extractall(target, members=members, filter="data")  # the filter too, as a second line
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise DatasetError(f"{archive}: cannot read the archive ({err}). Delete it and download it again.") from None
    return target


def open_source(source_dir: str | Path, scratch: Path, limits: ArchiveLimits | dict | None = None) -> Path:
    """The folder to read a fetched source from.

    Archives are verified again (against the digest ``source.json`` recorded, pinned or not) and
    extracted into ``scratch`` under ``limits`` (extra sources beside the main one); a folder
    source is read in place unless extra archives must join it.
    """
    source_dir = Path(source_dir)
    if source_dir.is_file():
        return safe_extract(source_dir, scratch, limits)
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
            safe_extract(linked, scratch, limits)
        else:
            (scratch / linked.name).symlink_to(linked, target_is_directory=True)
    return scratch
