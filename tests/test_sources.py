"""Sources: checksums verified on every use, safe extraction, downloads through a temporary file."""

import functools
import hashlib
import http.server
import io
import json
import logging
import os
import re
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, run_snakemake
from test_datasets import write_liu

from vadbench.config import validate_config
from vadbench.datasets import convert_source
from vadbench.datasets.sources import fetch_source, safe_extract
from vadbench.errors import ConfigError, DatasetError

PED2_TAR = REPO.parent / "shared/datasets/ped2.tar"


def make_tar(tmp_path: Path) -> tuple[Path, str]:
    write_liu(tmp_path / "tree", train=[3], test=[4], gt=[[[2], [3]]])
    archive = tmp_path / "mini.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "mini", arcname="mini")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_local_archive_is_verified_and_converted(tmp_path):
    archive, sha = make_tar(tmp_path)
    fetch_source("mini", {"source": str(archive), "layout": "liu", "sha256": sha}, tmp_path / "source")
    manifest = convert_source(tmp_path / "source", "liu", tmp_path / "frames")
    assert manifest["splits"] == {"train": {"01": 3}, "test": {"01": 4}}
    assert not list(tmp_path.glob(".frames.*")), "the extraction scratch folder is removed"


def test_tampered_archive_is_refused_before_extraction(tmp_path):
    archive, sha = make_tar(tmp_path)
    fetch_source("mini", {"source": str(archive), "layout": "liu", "sha256": sha}, tmp_path / "source")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed after the download rule checked it
    archive.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(DatasetError, match=f"mini.tar.gz: SHA-256 mismatch: expected {sha}, got {actual}"):
        convert_source(tmp_path / "source", "liu", tmp_path / "frames")
    assert not (tmp_path / "frames").exists()
    assert not list(tmp_path.glob(".frames.*/extracted/mini")), "nothing was extracted"
    with pytest.raises(DatasetError, match="SHA-256 mismatch"):
        fetch_source("mini", {"source": str(archive), "layout": "liu", "sha256": sha}, tmp_path / "source2")
    assert not (tmp_path / "source2").exists()


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return archive


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/evil.txt", "ok/../../escape.txt"])
def test_archive_member_outside_the_folder_is_refused(tmp_path, name):
    member = tarfile.TarInfo(name)
    member.size = 1
    archive = _tar_with(tmp_path, member)
    with pytest.raises(DatasetError, match="absolute path or '..'"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out").exists()


def _names(archive: Path, member: str) -> str:
    """The start of a refusal: the archive, then the member at fault."""
    return re.escape(f"{archive}: member {member!r}")


def path_max_chain_tar(archive: Path) -> Path:
    """A CVE-2025-4517 archive (after the public proof of concept) that writes ``FILE`` two levels
    above the folder it is extracted into, past Python 3.11.7's ``filter="data"``.

    Twenty links ``a``, ``a/b``, ... each point to a sibling folder with a 247-character name, so
    ``a/b/.../t`` resolves to a path longer than PATH_MAX, beyond which ``os.path.realpath`` stops
    resolving. Past that point ``q`` and ``q/r`` (``-> ..``) each climb one level while their
    names go one deeper, so ``escape -> a/b/.../t/q/r/`` plus 20 ``..`` reads as 2 levels inside
    the folder but lands 2 levels above it, where ``escape/FILE`` is written.
    """
    long, steps, chain = "d" * 247, "abcdefghijklmnopqrst", ""
    with tarfile.open(archive, "w") as tar:

        def add(name: str, kind: bytes, link: str = "", data: bytes = b"") -> None:
            member = tarfile.TarInfo(name)
            member.type, member.linkname, member.size = kind, link, len(data)
            tar.addfile(member, io.BytesIO(data) if data else None)

        for step in steps:
            add(os.path.join(chain, long), tarfile.DIRTYPE)
            add(os.path.join(chain, step), tarfile.SYMTYPE, long)
            chain = os.path.join(chain, step)
        add(f"{chain}/q", tarfile.SYMTYPE, "..")
        add(f"{chain}/q/r", tarfile.SYMTYPE, "..")
        add("escape", tarfile.SYMTYPE, f"{chain}/q/r/" + "../" * len(steps))
        add("escape/FILE", tarfile.REGTYPE, data=b"escaped")
    return archive


def test_symlink_chain_past_path_max_is_refused_before_writing(tmp_path):
    archive = path_max_chain_tar(tmp_path / "chain.tar")
    target = tmp_path / "one" / "two" / "out"
    target.parent.mkdir(parents=True)
    with pytest.raises(DatasetError, match=_names(archive, "a") + " is a symbolic link to 'd{247}'.*CVE-2025-4517"):
        safe_extract(archive, target)
    assert not (tmp_path / "one" / "FILE").exists(), "nothing written two levels above the target"
    assert not target.exists()


def test_symlink_chain_in_a_download_is_refused_by_the_frames_step(tmp_path, http_server):
    root, url = http_server
    archive = path_max_chain_tar(root / "chain.tar")
    dataset = {
        "source": f"{url}/chain.tar",
        "layout": "liu",
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
    }
    fetch_source("evil", dataset, tmp_path / "source", resources=tmp_path / "resources")
    downloaded = (tmp_path / "resources/evil/download/chain.tar").resolve()
    with pytest.raises(DatasetError, match=_names(downloaded, "a") + " is a symbolic link"):
        convert_source(tmp_path / "source", "liu", tmp_path / "frames")
    # extracted into tmp_path/.frames.scratch/extracted, so an escape would land in tmp_path
    assert not (tmp_path / "FILE").exists()
    assert not (tmp_path / "frames").exists() and not (tmp_path / ".frames.scratch").exists()


@pytest.mark.parametrize("kind, label", [(tarfile.SYMTYPE, "symbolic link"), (tarfile.LNKTYPE, "hard link")])
def test_every_link_in_a_tar_is_refused_even_inside_the_folder(tmp_path, kind, label):
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        frame = tarfile.TarInfo("mini/000.jpg")
        frame.size = 1
        tar.addfile(frame, io.BytesIO(b"x"))
        link = tarfile.TarInfo("mini/001.jpg")
        link.type, link.linkname = kind, "000.jpg" if kind == tarfile.SYMTYPE else "mini/000.jpg"
        tar.addfile(link)
    with pytest.raises(DatasetError, match=_names(archive, "mini/001.jpg") + f" is a {label} to"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "mode, message",
    [(stat.S_IFLNK | 0o777, "is a symbolic link"), (stat.S_IFIFO | 0o644, "is a device or special file")],
)
def test_links_and_special_files_in_a_zip_are_refused(tmp_path, mode, message):
    """A zip has no hard-link entry: a member's Unix mode says link, special file or regular file."""
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("mini/000.jpg", "x")
        member = zipfile.ZipInfo("mini/001.jpg")
        member.external_attr = mode << 16
        zf.writestr(member, "000.jpg")
    with pytest.raises(DatasetError, match=_names(archive, "mini/001.jpg") + f" {message}"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_archive_declaring_more_than_the_size_cap_is_refused_from_its_header(tmp_path):
    archive = tmp_path / "huge.tar"
    with tarfile.open(archive, "w") as tar:  # one 201 GB header and no data: the listing stops there
        member = tarfile.TarInfo("mini/video.avi")
        member.size = 201 * 10**9
        tar.addfile(member)
    assert archive.stat().st_size <= 10_240  # one tar record
    with pytest.raises(
        DatasetError,
        match=re.escape(
            f"{archive}: its members declare more than 200,000,000,000 bytes "
            "(archives.max_total_bytes; 201,000,000,000 up to member 'mini/video.avi')"
        ),
    ):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_with_more_members_than_the_configured_cap_is_refused(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(20_000):
            zf.writestr(f"f/{i}", b"")
    with pytest.raises(
        DatasetError, match=re.escape(f"{archive}: holds more than 10,000 members (archives.max_members)")
    ):
        safe_extract(archive, tmp_path / "out", {"max_members": 10_000})
    assert not (tmp_path / "out").exists()
    safe_extract(archive, tmp_path / "out", {"max_members": 20_000})  # the cap is a config value
    assert len(list((tmp_path / "out/f").iterdir())) == 20_000


def test_decompression_bomb_is_refused_by_its_ratio_before_writing(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mini/zeros.bin", bytes(32 << 20))  # 32 MiB of zeros in ~ 32 kB
    with pytest.raises(
        DatasetError,
        match=re.escape(f"{archive}: ") + r"[\d,]+ bytes expand to at least 33,554,432 "
        r"\(\d+x, above archives.max_ratio = 100",
    ):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_with_parent_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DatasetError, match="absolute path or '..'"):
        safe_extract(archive, tmp_path / "out")


@pytest.fixture
def http_server(tmp_path):
    """A file server on 127.0.0.1 for the download path; stopped after the test."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_is_verified_renamed_and_reused(tmp_path, http_server):
    root, url = http_server
    archive, sha = make_tar(tmp_path)
    (root / archive.name).write_bytes(archive.read_bytes())
    dataset = {"source": f"{url}/{archive.name}", "layout": "liu", "sha256": sha}
    fetch_source("mini", dataset, tmp_path / "source", resources=tmp_path / "resources")
    downloaded = tmp_path / "resources/mini/download/mini.tar.gz"
    assert downloaded.read_bytes() == archive.read_bytes()
    assert not list(downloaded.parent.glob("*.part"))
    assert json.loads((tmp_path / "source/source.json").read_text())["sources"][0]["kind"] == "archive"
    (root / archive.name).unlink()  # a rerun uses the verified download, not the network
    fetch_source("mini", dataset, tmp_path / "source", resources=tmp_path / "resources")
    assert convert_source(tmp_path / "source", "liu", tmp_path / "frames")["splits"]["test"] == {"01": 4}


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, http_server):
    root, url = http_server
    (root / "data.tar").write_bytes(b"not the dataset")
    dataset = {"source": f"{url}/data.tar", "layout": "liu", "sha256": "0" * 64}
    with pytest.raises(DatasetError, match="SHA-256 mismatch"):
        fetch_source("mini", dataset, tmp_path / "source", resources=tmp_path / "resources")
    assert not list((tmp_path / "resources/mini/download").iterdir())


def test_unreachable_url_says_what_to_download_and_where(tmp_path, http_server):
    _, url = http_server
    dataset = {"source": f"{url}/UCSD_Anomaly_Dataset.tar.gz", "layout": "ucsd", "sha256": "0" * 64}
    with pytest.raises(DatasetError) as err:
        fetch_source("ped2", dataset, tmp_path / "source", resources=tmp_path / "resources")
    message = str(err.value)
    assert f"Download it by hand from {url}/UCSD_Anomaly_Dataset.tar.gz" in message
    assert str((tmp_path / "resources/ped2/download/UCSD_Anomaly_Dataset.tar.gz").resolve()) in message
    assert "datasets.ped2.source" in message


def test_url_source_without_sha256_is_refused_with_how_to_pin_it(tmp_path, http_server):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    del config["datasets"]["avenue"]["extra_sources"][0]["sha256"]
    with pytest.raises(ConfigError) as err:
        validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    message = str(err.value)
    assert message.startswith("config key datasets.avenue.extra_sources.0.sha256: http://www.cse.cuhk.edu.hk/")
    assert "`sha256sum FILE` (macOS: `shasum -a 256 FILE`)" in message
    root, url = http_server  # and a direct call downloads nothing
    (root / "data.tar").write_bytes(b"anything")
    with pytest.raises(
        DatasetError,
        match=r"datasets.mini.sha256: http://127.0.0.1:\d+/data.tar is downloaded but has "
        "no SHA-256 pinned.*`sha256sum FILE`",
    ):
        fetch_source(
            "mini",
            {"source": f"{url}/data.tar", "layout": "liu"},
            tmp_path / "source",
            resources=tmp_path / "resources",
        )
    assert not (tmp_path / "resources/mini/download").exists()


def test_local_archive_without_sha256_gets_its_digest_recorded_and_verified(tmp_path, caplog):
    archive, sha = make_tar(tmp_path)
    with caplog.at_level(logging.WARNING, logger="vadbench"):
        fetch_source("mini", {"source": str(archive), "layout": "liu"}, tmp_path / "source")
    assert json.loads((tmp_path / "source/source.json").read_text())["sources"][0]["sha256"] == sha
    assert f"datasets.mini.sha256: {sha}" in caplog.text and "no SHA-256 pinned" in caplog.text
    archive.write_bytes(archive.read_bytes() + b"\0")  # changed after the download job recorded it
    with pytest.raises(DatasetError, match=f"SHA-256 mismatch: expected {sha}"):
        convert_source(tmp_path / "source", "liu", tmp_path / "frames")


def test_frames_manifest_records_the_sources_and_their_digests(tmp_path):
    archive, sha = make_tar(tmp_path)
    fetch_source("mini", {"source": str(archive), "layout": "liu", "sha256": sha}, tmp_path / "source")
    convert_source(tmp_path / "source", "liu", tmp_path / "frames")
    manifest = json.loads((tmp_path / "frames/manifest.json").read_text())
    assert manifest["sources"] == [{"source": str(archive), "sha256": sha}]
    folder = tmp_path / "tree"  # make_tar's extracted tree: a folder has no single digest
    fetch_source("mini", {"source": str(folder), "layout": "liu"}, tmp_path / "source2")
    assert convert_source(tmp_path / "source2", "liu", tmp_path / "frames2")["sources"] == [
        {"source": str(folder), "sha256": None}
    ]


@pytest.mark.workflow
@pytest.mark.skipif(not PED2_TAR.exists(), reason=f"real UCSD Ped2 not at {PED2_TAR}")
def test_real_ped2_through_the_data_rules(workflow_copy):
    (workflow_copy / "ped2.yaml").write_text(
        (REPO / "config/ped2_local.yaml").read_text().replace("../shared/datasets/ped2.tar", str(PED2_TAR))
    )
    run_snakemake(workflow_copy, "resources/ped2/cpu/clips.npz", configfile="ped2.yaml")
    manifest = json.loads((workflow_copy / "resources/ped2/frames/manifest.json").read_text())
    assert len(manifest["splits"]["train"]) == 16 and len(manifest["splits"]["test"]) == 12
    assert sum(manifest["splits"]["train"].values()) == 2550
    assert sum(manifest["splits"]["test"].values()) == 2010
    labels = np.load(workflow_copy / "resources/ped2/frames/labels.npz")
    assert sum(int(labels[v].sum()) for v in labels) == 1624
    assert list(labels["01"][59:62]) == [0, 1, 1]  # Test001 anomalous from 1-based frame 61
    video = np.load(workflow_copy / "resources/ped2/cpu/arrays/test/01.npy", mmap_mode="r")
    assert video.shape == (180, 64, 64, 1)
