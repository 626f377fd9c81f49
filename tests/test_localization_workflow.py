"""Where, through the real DAG: maps, boxes, pixel-level metrics, annotated videos, viewer pages and
their index come out of Snakemake on the tiny preset; the page works in a real headless Chromium;
``vadbench detect`` scores new footage with the model the DAG logged to MLflow."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from browser import Browser, find_chromium
from conftest import LOCALIZED_CONFIG, REPO, finished_workflow, run_snakemake

TARGET = "results/toy_memae_auc.json"
CONFIG = LOCALIZED_CONFIG.replace("seeds: [0, 1]", "seeds: [0]")


@pytest.fixture(scope="module")
def localized(tmp_path_factory) -> Path:
    workdir = finished_workflow(tmp_path_factory.mktemp("localized"), CONFIG, TARGET)
    run_snakemake(workdir, "results/viewer.html")
    return workdir


def test_the_dag_writes_maps_boxes_videos_and_pixel_metrics(localized):
    seed = localized / "results/toy/memae/seed0"
    manifest = json.loads((seed / "maps/manifest.json").read_text())
    assert manifest["measure"] == "error" and manifest["threshold"] > 0
    assert sorted(p.name for p in (seed / "maps").glob("*.npz")) == ["01.npz", "02.npz", "03.npz"]
    assert (seed / "boxes.csv").read_text().startswith("video,frame,x0,y0,x1,y1,area,score")
    for video in ("01", "02", "03"):
        with av.open(str(seed / f"viewer/videos/{video}.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.frames == manifest["videos"][video]
    auc = json.loads((seed / "auc.json").read_text())
    # the synthetic scene emits exact masks: every localisation metric is a number in [0, 1]
    for key in ("pixel_auc", "pixel_eer", "rbdc", "tbdc"):
        assert 0.0 <= auc[key] <= 1.0, key
    assert auc["localization"]["videos_with_masks"] == ["01", "02", "03"]
    result = json.loads((localized / TARGET).read_text())
    assert result["pixel_auc"]["mean"] == auc["pixel_auc"] and result["rbdc"]["mean"] == auc["rbdc"]


def test_the_index_links_every_viewer_page(localized):
    index = (localized / "results/viewer.html").read_text()
    assert 'href="toy/memae/seed0/viewer/index.html"' in index
    summary = json.loads((localized / "results/toy/memae/seed0/viewer/viewer.json").read_text())
    assert summary["videos"] == ["01", "02", "03"] and summary["meta"]["pixel_auc"] is not None


def test_the_seed_run_in_mlflow_holds_the_views_and_the_model(localized):
    from mlflow.tracking import MlflowClient

    info = json.loads((localized / "results/toy/memae/seed0/run.json").read_text())
    client = MlflowClient(f"sqlite:///{localized / 'results/mlflow.db'}")
    names = {a.path for a in client.list_artifacts(info["mlflow_run_id"])}
    assert {"model", "viewer", "localization"} <= names
    model = {a.path for a in client.list_artifacts(info["mlflow_run_id"], "model")}
    assert {"model/MLmodel", "model/extra_files", "model/data"} <= model
    metrics = client.get_run(info["mlflow_run_id"]).data.metrics
    assert {"pixel_auc", "rbdc", "tbdc", "box_threshold"} <= metrics.keys()


def test_the_viewer_plays_and_seeks_in_headless_chromium(localized, tmp_path):
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it with apt-get)")
    # VADBENCH_SCREENSHOT_PAGE: another viewer page to drive (the README's picture is made from
    # `make demo`'s results/toy/memae/seed0/viewer/index.html)
    page = Path(os.environ.get("VADBENCH_SCREENSHOT_PAGE", localized / "results/toy/memae/seed0/viewer/index.html"))
    with Browser() as browser:
        browser.open(page.as_uri())
        browser.wait_for("document.getElementById('video').readyState >= 2", timeout=20)
        drawn = browser.evaluate(
            "(() => { const c = document.getElementById('curve'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            " for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) n++;"
            " return n / (d.length / 4); })()"
        )
        assert drawn > 0.05  # the curve, its axes and the shaded ground truth are on the canvas
        rect = browser.evaluate(
            "(() => { const r = document.getElementById('curve').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()"
        )
        browser.click(rect[0] + 0.6 * rect[2], rect[1] + rect[3] / 2)
        browser.wait_for("video.currentTime > 0 && !video.seeking && video.readyState >= 2", timeout=10)
        time, duration = browser.evaluate("[video.currentTime, video.duration]")
        assert time / duration == pytest.approx(0.6, abs=0.05)
        assert browser.errors() == []
        browser.evaluate("document.activeElement.blur()")
        if os.environ.get("VADBENCH_SCREENSHOT"):
            browser.evaluate("new Promise((done) => setTimeout(done, 1500))")  # the seek spinner fades out
        shot = browser.screenshot(tmp_path / "viewer.png")
    assert shot.stat().st_size > 10_000
    if os.environ.get("VADBENCH_SCREENSHOT"):  # the README's picture: VADBENCH_SCREENSHOT=docs/viewer.png
        shutil.copyfile(shot, os.environ["VADBENCH_SCREENSHOT"])


def _detect(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vadbench", "detect", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_detect_scores_new_footage_with_the_model_logged_to_mlflow(localized, tmp_path):
    info = json.loads((localized / "results/toy/memae/seed0/run.json").read_text())
    video = tmp_path / "street.mp4"  # new footage: a test video re-encoded as an MP4 at another size
    frames = np.load(localized / "resources/toy/tiny/arrays/test/02.npy")[..., 0]
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in frames:
            big = np.repeat(np.repeat(frame, 2, axis=1), 2, axis=0)[:48]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.stack([big] * 3, -1), format="rgb24")))
        container.mux(stream.encode())
    out = tmp_path / "out"
    proc = _detect(
        "--model", f"runs:/{info['mlflow_run_id']}/model", "--input", str(video), "--out", str(out),
        "--tracking-uri", f"sqlite:///{localized / 'results/mlflow.db'}", cwd=localized,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "detect.json").read_text())
    assert record["frames"] == len(frames) and record["frame_size"] == [32, 32]
    assert (
        record["threshold"]
        == json.loads((localized / "results/toy/memae/seed0/maps/manifest.json").read_text())["threshold"]
    )  # the threshold fixed on the model's training clips travels with the MLflow model
    scores = (out / "scores.csv").read_text().splitlines()
    assert scores[0] == "frame,raw,score" and len(scores) == len(frames) + 1
    assert (out / "viewer/index.html").is_file() and (out / "viewer/videos/street.mp4").is_file()
    assert "open " in proc.stdout

    # the model.pt of results/ and a folder of frames work the same way
    folder = localized / "resources/toy/frames/test/01"
    proc = _detect("--model", "results/toy/memae/seed0/model.pt", "--input", str(folder), "--out", str(out / "b"),
                   "--no-video", cwd=localized)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "b/detect.json").read_text())["threshold_origin"].startswith("training clips")


def test_the_logged_model_maps_a_batch_of_any_size_as_the_trained_model_does(localized):
    """What README promises of ``mlflow.pytorch.load_model(runs:/<id>/model)``: a module whose
    output is the anomaly map, for one clip or many (an example of one clip would have fixed the
    exported batch at 1)."""
    code = f"""
import json, mlflow, mlflow.pytorch, torch
from vadbench.detect import _map_module
from vadbench.protocol import Protocol
from vadbench.training import load_trained
mlflow.set_tracking_uri("sqlite:///{localized / "results/mlflow.db"}")
run_id = json.load(open("results/toy/memae/seed0/run.json"))["mlflow_run_id"]
logged = mlflow.pytorch.load_model(f"runs:/{{run_id}}/model")
model, run = load_trained("results/toy/memae/seed0/model.pt")
info = json.load(open(mlflow.artifacts.download_artifacts(f"runs:/{{run_id}}/model/extra_files/vadbench.json")))
reference = _map_module(model, Protocol.from_dict(info["protocol"]).offset, 1, False)
h, w = run["preset"]["frame_size"]
torch.manual_seed(0)
x = torch.rand(3, 1, run["preset"]["clip_length"], h, w) * 2 - 1
for b in (1, 3):
    out = logged(x[:b])
    assert out.shape == (b, h, w), out.shape
    assert torch.allclose(out, reference(x[:b]), atol=1e-5), b
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=localized, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_detect_refuses_unreadable_or_too_short_input_with_a_clear_error(localized, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    proc = _detect("--model", "results/toy/memae/seed0/model.pt", "--input", str(junk), "--out", str(tmp_path / "o"),
                   cwd=localized)  # fmt: skip
    assert proc.returncode == 2 and str(junk) in proc.stderr and not (tmp_path / "o").exists()
    short = tmp_path / "short"
    short.mkdir()
    for i in range(5):
        shutil.copyfile(localized / f"resources/toy/frames/test/01/{i:04d}.jpg", short / f"{i:03d}.jpg")
    proc = _detect("--model", "results/toy/memae/seed0/model.pt", "--input", str(short), "--out", str(tmp_path / "o"),
                   cwd=localized)  # fmt: skip
    assert proc.returncode == 2 and "5 frames" in proc.stderr and "16 frames" in proc.stderr
    proc = _detect("--model", "nowhere/model.pt", "--input", str(short), "--out", str(tmp_path / "o"), cwd=localized)
    assert proc.returncode == 2 and "no such model file" in proc.stderr


def test_a_model_file_that_is_not_a_vadbench_model_is_refused(localized, tmp_path):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"not a checkpoint")
    folder = localized / "resources/toy/frames/test/01"
    proc = _detect("--model", str(fake), "--input", str(folder), "--out", str(tmp_path / "o"), cwd=localized)
    assert proc.returncode == 2 and str(fake) in proc.stderr


def test_the_snakemake_report_links_the_viewer_pages(localized):
    import zipfile

    run_snakemake(localized, TARGET, "--report", "report.zip")
    names = zipfile.ZipFile(localized / "report.zip").namelist()
    assert any(n.endswith("/index.html") and "/data/raw/" in n for n in names)
    assert sum(n.endswith(".mp4") for n in names) == 3


def test_the_readme_shows_the_viewer_screenshot_the_test_made():
    readme = (REPO / "README.md").read_text()
    assert "(docs/viewer.png)" in readme and (REPO / "docs/viewer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
