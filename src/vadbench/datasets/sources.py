"""Where a dataset comes from: a URL, a local archive, a local folder, or the synthetic generator.

The ``download`` rule calls :func:`fetch_source`, which leaves ``resources/<name>/source/``
holding ``source.json`` and a link named ``data`` to the archive or folder. Downloads go to
``resources/<name>/download/<file>`` (outside the rule's output, so a rerun never downloads
again), through a temporary ``<file>.part`` renamed on success. An interrupted download keeps
the part, and the next attempt (a few in one job, then the next job) continues it with an HTTP
Range request; a server that ignores Range is downloaded again from zero.

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
import http.client
import importlib
import os
import re
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


_ATTEMPTS = 3  # requests per download call; each one continues the .part file where the last stopped
_BACKOFF_S = 1.0  # wait before the second attempt, doubled before each later one
_TIMEOUT_S = 60  # per connect or read
_PROGRESS_EVERY_S = 5.0
# No dataset archive comes near this; it bounds a server that declares no length (or a huge one).
MAX_DOWNLOAD_BYTES = 200 * 10**9
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Dropped(Exception):
    """The body ended before the length the server declared: worth another, resumed, attempt."""


class _Progress:
    """Logs bytes done of the total, the percentage, the rate and the ETA, at most every few seconds."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.t0, self.done0, self.total = self.last, 0, None

    def start(self, done: int, total: int | None) -> None:
        self.t0, self.done0, self.total = time.monotonic(), done, total

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < _PROGRESS_EVERY_S:
            return
        self.last = now
        rate = (done - self.done0) / max(now - self.t0, 1e-6)
        text = f"downloaded {done / 1e6:.1f}"
        text += f" of {self.total / 1e6:.1f} MB ({100 * done / self.total:.0f}%)" if self.total else " MB"
        text += f", {rate / 1e6:.1f} MB/s"
        if self.total and rate > 0 and not final:
            eta = int((self.total - done) / rate)
            text += f", ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
        log.info("%s", text)


def _request(url: str, part: Path, expected_sha256: str) -> tuple[Any, int, int | None, int | None] | None:
    """Ask for what ``part`` lacks: ``(response, offset, length, total)``, or ``None`` if it is complete.

    With a non-empty ``part`` this sends ``Range: bytes=<size>-`` and continues only from a
    ``206`` whose ``Content-Range`` is exactly ``<size>-<total - 1>/<total>``. A ``200`` (the
    server ignores Range) is the whole file, written from offset 0; any other ``Content-Range``
    discards the part and asks again from zero. A ``416`` (nothing past ``<size>``) means the
    part is complete if its checksum matches, and holds wrong bytes otherwise: it is discarded.
    ``length`` is the body's declared size (``None`` if undeclared), ``total`` the file's.
    """
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)
        except urllib.error.HTTPError as err:
            if err.code != 416 or not offset:
                raise
            err.close()
            if sha256_of(part) == expected_sha256.lower():
                log.info(
                    "%s is complete (%s bytes; the server has nothing past them) and its SHA-256 matches",
                    part,
                    f"{offset:,}",
                )
                return None
            log.warning(
                "%s: the server has nothing past byte %s (416 Range Not Satisfiable) and the kept bytes "
                "do not match the pinned SHA-256: starting over from zero",
                part,
                f"{offset:,}",
            )
            part.unlink()
            continue
        declared = response.headers.get("Content-Length", "").strip()
        length = int(declared) if declared.isdigit() else None
        if response.status != 206:
            if offset:
                log.warning(
                    "%s: the server ignored the request to resume at byte %s (status %d, the whole file): "
                    "starting over from zero",
                    url,
                    f"{offset:,}",
                    response.status,
                )
            return response, 0, length, length
        content_range = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.fullmatch(content_range.strip())
        if match:
            start, end = int(match[1]), int(match[2])
            total = None if match[3] == "*" else int(match[3])
            if (
                start == offset
                and end >= start
                and (total is None or end + 1 == total)
                and (length is None or length == end + 1 - start)
            ):
                if offset:
                    of = f" of {total:,} ({100 * offset / total:.0f}%)" if total else ""
                    log.info("resuming %s at byte %s%s", part, f"{offset:,}", of)
                return response, offset, end + 1 - start, end + 1
        response.close()
        if not offset:
            raise _Dropped(f"partial content {content_range!r} in reply to a request for the whole file")
        log.warning(
            "%s: asked to resume at byte %s, the server sent Content-Range %r: starting over from zero",
            url,
            f"{offset:,}",
            content_range,
        )
        part.unlink()


def _receive(
    response: Any, part: Path, offset: int, length: int | None, total: int | None, url: str, progress: _Progress
) -> None:
    """Write ``response``'s body to ``part`` from ``offset``, never more than the declared ``length``.

    Raises:
        _Dropped: the body ended short of ``length`` (the bytes received are kept).
        DatasetError: the server sent more than it declared, or more than ``MAX_DOWNLOAD_BYTES``;
            ``part`` is removed.
    """
    limit = MAX_DOWNLOAD_BYTES - offset if length is None else length
    if offset + limit > MAX_DOWNLOAD_BYTES:
        raise DatasetError(
            f"{url}: the server declares {offset + limit:,} bytes, more than any dataset archive "
            f"(MAX_DOWNLOAD_BYTES = {MAX_DOWNLOAD_BYTES:,}); refusing to download it. Check the URL."
        )
    got, overflow = 0, False
    progress.start(offset, total)
    with open(part, "ab" if offset else "wb") as out:
        while chunk := response.read(_CHUNK):
            if got + len(chunk) > limit:
                overflow = True
                break
            out.write(chunk)
            got += len(chunk)
            progress.update(offset + got)
    if overflow:
        part.unlink()
        promised = (
            f"the {limit:,} bytes it declared"
            if length is not None
            else f"{MAX_DOWNLOAD_BYTES:,} bytes (MAX_DOWNLOAD_BYTES) without declaring a length"
        )
        raise DatasetError(
            f"{url}: the server sent more than {promised}; refusing the download and removing {part}, so a "
            "broken or hostile server cannot fill the disk. Download the file by hand from a working mirror."
        )
    if length is not None and got < length:
        raise _Dropped(f"connection closed after {offset + got:,} of {offset + length:,} bytes")
    progress.update(offset + got, final=True)


def _retryable(err: BaseException) -> bool:
    """A dropped or refused connection, a timeout or a server error; not a 404 or a 403."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    return True


def download(url: str, target: Path, expected_sha256: str | None, name: str, key: str = "") -> Path:
    """Download ``url`` to ``target`` (temporary file, renamed when complete and verified).

    ``expected_sha256`` is required: without it a tampered mirror or a man in the middle (the
    official Ped2 and Avenue servers speak plain http) would go unnoticed. ``key`` is the
    config key of the digest, for the message (default ``datasets.<name>.sha256``).

    The bytes go to ``<target>.part``, which an interrupted download keeps: up to ``_ATTEMPTS``
    requests in this call, and the next call, continue it with an HTTP Range request (or start
    over where the server does not support one, see :func:`_request`). The SHA-256 is checked on
    the whole file; on a mismatch the part is removed, so a corrupt partial is not resumed again.
    No response may write more than it declared (Content-Length or Content-Range).
    """
    key = key or f"datasets.{name}.sha256"
    if not expected_sha256:
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
    kept = part.stat().st_size if part.exists() else 0
    log.info(
        "downloading %s -> %s%s",
        url,
        target,
        f" (continuing {part}: {kept:,} bytes from an earlier run)" if kept else "",
    )
    progress, resumed = _Progress(), 0
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            reply = _request(url, part, expected_sha256)
            if reply is not None:
                response, offset, length, total = reply
                resumed = offset or resumed
                with response:
                    _receive(response, part, offset, length, total, url, progress)
            break
        except (urllib.error.URLError, OSError, http.client.HTTPException, _Dropped) as err:
            if attempt == _ATTEMPTS or not _retryable(err):
                raise _cannot_download(url, target, part, name, err, attempt) from None
            wait = _BACKOFF_S * 2 ** (attempt - 1)
            at = part.stat().st_size if part.exists() else 0
            log.warning(
                "download of %s interrupted (%s); attempt %d of %d in %.0f s, from byte %s",
                url,
                err,
                attempt + 1,
                _ATTEMPTS,
                wait,
                f"{at:,}",
            )
            time.sleep(wait)
    actual = sha256_of(part)
    if actual != expected_sha256.lower():
        part.unlink()
        note = (
            f" (resumed at byte {resumed:,}: the bytes kept from an earlier attempt may be the bad ones)"
            if resumed
            else ""
        )
        raise DatasetError(
            f"{part}: SHA-256 mismatch: expected {expected_sha256}, got {actual}{note}. The download is corrupt, "
            f"truncated or a different release; the partial file is removed, so the next run downloads {url} "
            f"again from the start. If it fails again, download it by hand and put it at {target.resolve()} "
            f"(or fix {key})."
        )
    os.replace(part, target)
    return target


def _cannot_download(url: str, target: Path, part: Path, name: str, err: BaseException, attempts: int) -> DatasetError:
    """The error for a download that failed ``attempts`` times; a non-empty ``part`` is kept for the next run."""
    kept = part.stat().st_size if part.exists() else 0
    if part.exists() and not kept:
        part.unlink()
    tries = f"; {attempts} attempts" if attempts > 1 else ""
    resume = f" The {kept:,} bytes received so far stay in {part}, and the next run resumes from there." if kept else ""
    return DatasetError(
        f"cannot download {url} ({err}{tries}). Download it by hand from {url} and put it at {target.resolve()} "
        f"(or anywhere, and set datasets.{name}.source to that path); it is verified against "
        f"datasets.{name}.sha256 before use." + resume
    )


def _missing_help(layout: str) -> str:
    """A layout module's ``MISSING_SOURCE_HELP`` (how to obtain a dataset that cannot be downloaded)."""
    try:
        module = importlib.import_module(f"vadbench.datasets.{layout}")
    except ImportError:
        return ""
    help_text = getattr(module, "MISSING_SOURCE_HELP", "")
    return f"\n{help_text}" if help_text else ""


def _place(
    name: str, source: str, sha: str | None, resources: Path, layout: str = "", key: str = ""
) -> tuple[str, Path, str | None]:
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
            "job too: %s: %s",
            path,
            actual,
            key,
            actual,
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
                kind, real, sha = _place(
                    name, entry["source"], entry.get("sha256"), Path(resources), dataset.get("layout", ""), key
                )
                link.symlink_to(real, target_is_directory=real.is_dir())
                path = str(real)
            record.append({"link": link.name, "kind": kind, "source": entry["source"], "path": path, "sha256": sha})
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
            raise DatasetError(
                f"{archive}: member {info.filename!r} is a device or special file; refusing to extract it"
            )
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
