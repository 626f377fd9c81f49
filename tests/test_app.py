"""The web app lists the store's trained models, runs detection on an uploaded video and shows
its views; it binds to this machine only, and a bad upload is reported, not a traceback."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import prepare_tiny_data, tiny_config

from vadbench.app import PAGE, command, list_models, model_label, run_detection, safe_name, save_upload
from vadbench.errors import DatasetError
from vadbench.tracking import ENV_URI

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
SELECTOR = "Model (dataset / variant / seed / AUC)"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A real SQLite MLflow store holding one tiny trained MemAE, logged as the maps rule logs it,
    plus a run without a model; and the tiny dataset's test video 01 as an MP4."""
    from vadbench.config import run_config
    from vadbench.detect import log_detector
    from vadbench.maps import LocalizationSettings, compute_maps
    from vadbench.protocol import Protocol
    from vadbench.tracking import RunLogger, init_store
    from vadbench.training import train_model

    root = prepare_tiny_data(tmp_path_factory.mktemp("app"))
    config = tiny_config()
    config["presets"]["tiny"]["epochs"] = 1
    run = run_config(config, "toy", "memae", 0)
    model = root / "model.pt"
    train_model(run, root / "arrays", root / "clips.npz", model, root / "model.ckpt")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    init_store(uri, ["toy"], root / "mlruns")
    protocol, settings = Protocol.named("memae"), LocalizationSettings()
    manifest = compute_maps(
        model,
        root / "arrays",
        root / "clips.npz",
        protocol,
        settings,
        root / "maps",
        root / "boxes.json",
        root / "boxes.csv",
    )
    tracker = RunLogger(
        uri, "toy", run_name="memae-seed0", tags={"dataset": "toy", "variant": "memae", "seed": "0", "preset": "tiny"}
    )
    tracker.log_metrics({"micro_auc": 0.8125})
    log_detector(tracker, model, protocol, settings, manifest)
    tracker.finish()
    untrained = RunLogger(uri, "toy", run_name="ae-seed1", tags={"dataset": "toy", "variant": "ae", "seed": "1"})
    untrained.finish()
    video = root / "clip 01.mp4"
    write_mp4(np.load(root / "arrays" / "test" / "01.npy", allow_pickle=False), video)
    return {"uri": uri, "run_id": tracker.run_id, "video": video, "frames": 48}


def write_mp4(frames: np.ndarray, path: Path) -> None:
    """(T, H, W, 1) uint8 gray frames as an H.264 MP4 at 10 fps."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            rgb = np.repeat(frame, 3, axis=-1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def page(store, monkeypatch) -> AppTest:
    monkeypatch.setenv(ENV_URI, store["uri"])
    # AppTest runs the page as sys.modules["__main__"] and leaves it there: a later test that
    # starts a "spawn" process (which re-runs __main__) would run the Streamlit page instead
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    return AppTest.from_file(str(PAGE), default_timeout=60)


def test_only_runs_holding_a_model_are_listed(store):
    models = list_models(store["uri"])
    assert [m["run_id"] for m in models] == [store["run_id"]]
    (model,) = models
    assert model["uri"] == f"runs:/{store['run_id']}/model"
    assert (model["dataset"], model["variant"], model["seed"], model["micro_auc"]) == ("toy", "memae", 0, 0.8125)
    assert model_label(model) == f"toy / memae / seed 0 / AUC 0.812 (run {store['run_id'][:8]})"


def test_a_missing_store_is_refused_not_created(tmp_path):
    with pytest.raises(Exception, match="no MLflow store here"):
        list_models(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()


def test_upload_names_are_reduced_to_a_plain_file_name(tmp_path):
    assert safe_name("../../etc/cron.d/x.MP4") == "x.mp4"
    assert safe_name("C:\\Users\\me\\my clip (1).avi") == "my_clip_1.avi"
    assert safe_name(".hidden.mp4") == "hidden.mp4"
    assert safe_name("..mp4") == "upload.mp4"
    with pytest.raises(DatasetError, match="not a video file name"):
        safe_name("notes.txt")
    saved = save_upload(io.BytesIO(b"x" * 10), "../up/a b.mp4", tmp_path, max_bytes=10)
    assert saved == tmp_path / "a_b.mp4" and saved.read_bytes() == b"x" * 10
    with pytest.raises(DatasetError, match="larger than"):
        save_upload(io.BytesIO(b"x" * 11), "big.mp4", tmp_path, max_bytes=10)
    assert not (tmp_path / "big.mp4").exists()


def test_detection_returns_the_views_and_leaves_no_files(store, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_URI, store["uri"])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where every temporary directory goes
    with open(store["video"], "rb") as f:
        found = run_detection(f"runs:/{store['run_id']}/model", f, store["video"].name)
    assert found.name == "clip_01" and found.record["frames"] == store["frames"]
    assert found.record["input"] == "clip_01.mp4"
    assert found.record["threshold_origin"] == "training clips of the model (maps rule)"
    assert [s["frame"] for s in found.scores] == list(range(store["frames"]))
    assert found.video[4:8] == b"ftyp"
    names = zipfile.ZipFile(io.BytesIO(found.viewer_zip)).namelist()
    assert set(names) >= {"clip_01-viewer/index.html", "clip_01-viewer/videos/clip_01.mp4"}
    assert list(tmp_path.iterdir()) == []


def test_page_lists_models_and_shows_the_views_of_an_uploaded_video(page, store):
    at = page.run()
    assert not at.exception and not at.error
    (selector,) = at.selectbox
    assert selector.label == SELECTOR
    assert selector.options == [model_label(list_models(store["uri"])[0])]
    assert at.warning[0].value.startswith("No server address set")  # AppTest serves nothing
    detect = next(b for b in at.button if b.label == "Detect")
    assert detect.disabled  # nothing uploaded yet
    at.file_uploader[0].upload(store["video"].name, store["video"].read_bytes(), "video/mp4").run()
    next(b for b in at.button if b.label == "Detect").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Frames"] == str(store["frames"])
    assert "Box threshold" in metrics
    assert any("training clips of the model" in c.value for c in at.caption)
    assert len(at.get("video")) == 1
    assert len(at.get("vega_lite_chart")) == 1
    (table,) = at.dataframe
    assert list(table.value.columns) == ["frame", "x0", "y0", "x1", "y1", "area", "score"]
    assert len(table.value) == int(metrics["Boxes"])
    assert at.download_button[0].label == "Download the viewer page (zip)"


def test_an_unreadable_upload_is_reported_as_an_error(page):
    at = page.run()
    at.file_uploader[0].upload("x.mp4", np.random.default_rng(0).bytes(4096), "video/mp4").run()
    next(b for b in at.button if b.label == "Detect").click().run()
    assert not at.exception
    (error,) = at.error
    assert error.value.startswith("x.mp4: PyAV cannot decode this video")
    assert "vadbench-app-" not in error.value and not at.get("video")  # the upload's name, not its temp path


def test_launch_binds_to_localhost_by_default():
    argv = command()
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(PAGE)]
    options = dict(zip(argv[5::2], argv[6::2]))
    assert options["--server.address"] == "127.0.0.1"
    assert options["--server.port"] == "8501"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    assert 0 < int(options["--server.maxUploadSize"]) <= 200
    assert command("0.0.0.0", 9000)[5:9] == ["--server.address", "0.0.0.0", "--server.port", "9000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_app_serves_localhost_and_scores_a_video_uploaded_from_a_real_browser(store, tmp_path):
    from browser import Browser, find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    video = store["video"]
    server = subprocess.Popen(
        [sys.executable, "-m", "vadbench", "app", "--port", str(port)],  # the default host
        env={**os.environ, ENV_URI: store["uri"]},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "wb"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "_stcore/health", timeout=2) as reply:
                    assert reply.read() == b"ok"
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "server.log").read_text()) from None
                time.sleep(0.2)
        listening = {c.laddr for c in psutil.Process(server.pid).net_connections("inet") if c.status == "LISTEN"}
        assert listening == {("127.0.0.1", port)}  # vadbench app exec'd the server, bound to loopback only
        with Browser() as browser:
            browser.open(url)
            browser.wait_for(f"document.body.innerText.includes({SELECTOR!r})", timeout=30)
            assert "Listening on 127.0.0.1 only" in browser.evaluate("document.body.innerText")
            chosen = browser.evaluate("document.querySelector('[data-testid=stSelectbox] input').value")
            assert chosen.startswith("toy / memae / seed 0 / AUC 0.812")
            # a real upload, through Streamlit's upload endpoint (AppTest bypasses it)
            browser.wait_for("!!document.querySelector('input[type=file]')")
            found = browser.send("Runtime.evaluate", {"expression": "document.querySelector('input[type=file]')"})
            browser.send("DOM.setFileInputFiles", {"objectId": found["result"]["objectId"], "files": [str(video)]})
            detect = "[...document.querySelectorAll('button')].find(b => b.innerText === 'Detect')"
            browser.wait_for(f"{detect} && !{detect}.disabled")
            browser.evaluate(f"{detect}.click()")
            browser.wait_for("!!document.querySelector('[data-testid=stDataFrame]')", timeout=60)
            browser.wait_for("document.querySelector('video').readyState >= 2", timeout=20)  # the MP4 plays
            assert f"Frames\n\n{store['frames']}" in browser.evaluate("document.body.innerText")
            assert browser.errors() == []
            assert browser.screenshot(tmp_path / "app.png").stat().st_size > 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
