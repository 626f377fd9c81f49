"""Sources: checksums verified on every use, safe extraction, downloads through a temporary file."""

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_snakemake
from test_datasets import write_liu
from vadbench.datasets import convert_source
from vadbench.datasets.sources import fetch_source, safe_extract
from vadbench.errors import DatasetError

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
    assert list((tmp_path / "out").iterdir()) == []


def test_link_escaping_the_folder_is_refused(tmp_path):
    member = tarfile.TarInfo("data/link")
    member.type, member.linkname = tarfile.SYMTYPE, "../../outside"
    with pytest.raises(DatasetError, match="links to '../../outside', outside the extraction folder"):
        safe_extract(_tar_with(tmp_path, member), tmp_path / "out")


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


@pytest.mark.workflow
@pytest.mark.skipif(not PED2_TAR.exists(), reason=f"real UCSD Ped2 not at {PED2_TAR}")
def test_real_ped2_through_the_data_rules(workflow_copy):
    (workflow_copy / "ped2.yaml").write_text((REPO / "config/ped2_local.yaml").read_text().replace(
        "../shared/datasets/ped2.tar", str(PED2_TAR)))
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
