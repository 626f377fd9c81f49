"""``vadbench app``: a local web app (Streamlit) that lists the trained models of the MLflow store,
takes an uploaded video, runs :func:`vadbench.detect.detect` on it and shows what it wrote: the
annotated MP4, the per-frame score curve, the boxes, the threshold and its origin, and the viewer
page as a zip. The page itself is ``app_page.py``; everything it does that can be tested without
a browser is here.

    vadbench app [--tracking-uri sqlite:///results/mlflow.db] [--host 127.0.0.1] [--port 8501]
      └── python -m streamlit run app_page.py --server.address 127.0.0.1 ...   (this process, exec'd)
            ├── list_models(uri)              runs of every experiment that hold model/MLmodel
            └── run_detection(model, upload)  tempdir/upload/<safe name> -> tempdir/out/ -> bytes

A trained model is a run of the store with a ``model/MLmodel`` artifact: the ``maps`` rule logs it
(:func:`vadbench.detect.log_detector`), and ``runs:/<run id>/model`` is what detection is given.

Pitfalls it handles:

- The server binds to 127.0.0.1 unless told otherwise: an upload form is an open door to anyone
  who can reach the port, and the page says where it listens.
- An upload's name comes from the browser: it is reduced to a plain file name of letters, digits,
  ``.``, ``_`` and ``-`` (:func:`safe_name`) and written inside a fresh temporary directory, never
  to a path the user gave; its size is bounded twice (Streamlit's ``server.maxUploadSize`` and
  :func:`save_upload` while copying).
- Nothing is left on disk: the upload and detect's output live in one temporary directory per
  detection, read into memory and removed before the page shows them.
- The tracking URI reaches the page as ``MLFLOW_TRACKING_URI`` in the server's environment, which
  is also what MLflow reads when detect fetches ``runs:/<id>/model``.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vadbench.errors import ConfigError, DatasetError
from vadbench.fileio import read_json
from vadbench.tracking import ENV_URI, pages, redact_uri, sqlite_path

PAGE = Path(__file__).with_name("app_page.py")
MAX_UPLOAD_MB = 200
MODEL_ARTIFACT = "model/MLmodel"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ----------------------------------------------------------------------------- the server


def command(host: str = "127.0.0.1", port: int = 8501, max_upload_mb: int = MAX_UPLOAD_MB) -> list[str]:
    """The Streamlit command line that serves the page on ``host:port`` (the tracking URI is not on
    it but in the environment, see :func:`launch`: a URI may hold credentials): headless, no usage statistics, no file watcher, no developer menu (deploy,
    rerun), uploads capped at ``max_upload_mb`` MB."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(PAGE),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.maxUploadSize",
        str(max_upload_mb),
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def launch(tracking_uri: str, host: str = "127.0.0.1", port: int = 8501) -> None:
    """Replace this process with the Streamlit server of the app, ``MLFLOW_TRACKING_URI`` set to
    ``tracking_uri`` (an exec, not a child: Ctrl-C and SIGTERM reach the server itself and nothing
    is orphaned). Never returns; ``OSError`` if Python cannot be executed."""
    if host not in LOCAL_HOSTS:
        print(
            f"vadbench app: listening on {host}: anyone who can reach port {port} can upload video and run models",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in host else host
    print(f"vadbench app: models from {redact_uri(tracking_uri)}; open http://{shown}:{port}", file=sys.stderr)
    argv = command(host, port)
    os.execve(argv[0], argv, {**os.environ, ENV_URI: tracking_uri})


# ----------------------------------------------------------------------------- models


def list_models(tracking_uri: str) -> list[dict[str, Any]]:
    """Every run of every experiment in the store that holds a vadbench model (``model/MLmodel``),
    sorted by dataset, variant and seed.

    Returns:
        One dict per model: ``run_id``, ``name`` (the run's), ``experiment``, ``dataset``,
        ``variant``, ``seed`` (tags of a seed run; None when missing), ``micro_auc`` (the run's
        metric, None before the evaluate rule logged it) and ``uri`` (``runs:/<run id>/model``).

    Raises:
        ConfigError: a SQLite store that does not exist (listing must not create an empty one).
    """
    from mlflow.tracking import MlflowClient

    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_file():
        raise ConfigError(
            f"{path}: no MLflow store here. Run the workflow first (it creates results/mlflow.db), or give "
            "the store with --tracking-uri or MLFLOW_TRACKING_URI"
        )
    client = MlflowClient(tracking_uri=tracking_uri)
    models = []
    for experiment in pages(client.search_experiments):
        for run in pages(client.search_runs, experiment_ids=[experiment.experiment_id]):
            if not _has_model(client, run.info.run_id):
                continue
            tags = run.data.tags
            auc = run.data.metrics.get("micro_auc")
            models.append(
                {
                    "run_id": run.info.run_id,
                    "name": run.info.run_name,
                    "experiment": experiment.name,
                    "dataset": tags.get("dataset"),
                    "variant": tags.get("variant"),
                    "seed": int(tags["seed"]) if tags.get("seed", "").isdigit() else None,
                    "micro_auc": None if auc is None or not math.isfinite(auc) else float(auc),
                    "uri": f"runs:/{run.info.run_id}/model",
                }
            )
    return sorted(models, key=lambda m: (m["dataset"] or "", m["variant"] or "", m["seed"] or 0, m["run_id"]))


def _has_model(client, run_id: str) -> bool:
    return any(f.path == MODEL_ARTIFACT for f in client.list_artifacts(run_id, "model"))


def model_label(model: dict[str, Any]) -> str:
    """What the model selector shows: ``toy / memae / seed 0 / AUC 0.912 (run 1a2b3c4d)``."""
    auc = "AUC n/a" if model["micro_auc"] is None else f"AUC {model['micro_auc']:.3f}"
    seed = "seed ?" if model["seed"] is None else f"seed {model['seed']}"
    dataset, variant = model["dataset"] or model["experiment"], model["variant"] or model["name"]
    return f"{dataset} / {variant} / {seed} / {auc} (run {model['run_id'][:8]})"


# ----------------------------------------------------------------------------- uploads


def safe_name(filename: str) -> str:
    """``filename`` as a plain file name: its last path component, every run of characters other
    than letters, digits, ``.``, ``_``, ``-`` turned into ``_``, no leading dot, at most 100
    characters (the suffix kept).

    Raises:
        DatasetError: the name does not end in a video suffix detect reads.
    """
    from vadbench.detect import VIDEO_SUFFIXES

    stem, dot, suffix = _UNSAFE.sub("_", Path(filename.replace("\\", "/")).name).rpartition(".")
    suffix = dot + suffix
    if suffix.lower() not in VIDEO_SUFFIXES:
        raise DatasetError(
            f"{filename!r}: not a video file name; upload one of {', '.join(VIDEO_SUFFIXES)} "
            "(convert other formats with ffmpeg)"
        )
    stem = stem.strip("._-")[:100] or "upload"
    return stem + suffix.lower()


def save_upload(stream: BinaryIO, filename: str, directory: str | Path, max_bytes: int) -> Path:
    """Copy an uploaded file into ``directory`` under :func:`safe_name` of ``filename``, refusing
    more than ``max_bytes``.

    Raises:
        DatasetError: a name that is not a video's, an empty file, or one over the limit (the
            partial copy is removed).
    """
    path = Path(directory) / safe_name(filename)
    written = 0
    with open(path, "xb") as out:
        while chunk := stream.read(1 << 20):
            written += len(chunk)
            if written > max_bytes:
                break
            out.write(chunk)
    if written > max_bytes:
        path.unlink()
        raise DatasetError(f"{filename}: larger than {max_bytes / 2**20:.0f} MB; cut the video shorter and retry")
    if written == 0:
        path.unlink()
        raise DatasetError(f"{filename}: the uploaded file is empty")
    return path


# ----------------------------------------------------------------------------- detection


@dataclass
class Detection:
    """What the page shows of one detection, held in memory (its files are already removed).

    Attributes:
        record: ``detect.json`` (model, input, frames, protocol, threshold and its origin, boxes).
        scores: ``scores.csv`` rows, ``{"frame", "raw", "score"}``; unscored frames have None.
        boxes: every box of ``boxes.json``, ``{"frame", "x0", "y0", "x1", "y1", "area", "score"}``
            (pixels of the model's frame size, area in pixels).
        video: the annotated MP4 (``viewer/videos/<name>.mp4``).
        viewer_zip: the ``viewer/`` folder (page and video) as a zip.
        name: the sanitised upload name the files are named after.
    """

    record: dict[str, Any]
    scores: list[dict[str, Any]]
    boxes: list[dict[str, Any]]
    video: bytes
    viewer_zip: bytes
    name: str


def run_detection(
    model_uri: str,
    stream: BinaryIO,
    filename: str,
    max_bytes: int = MAX_UPLOAD_MB * 2**20,
    threads: int = 1,
) -> Detection:
    """Save the upload in a fresh temporary directory, run :func:`vadbench.detect.detect` with
    ``model_uri`` into it, read back what the page shows and remove the directory.

    Raises:
        DatasetError: a bad upload (see :func:`save_upload`), an undecodable or too short video,
            a model that cannot be fetched (detect's errors, unchanged).
    """
    from vadbench.detect import detect

    with tempfile.TemporaryDirectory(prefix="vadbench-app-") as tmp:
        upload = Path(tmp) / "upload"
        upload.mkdir()
        source = save_upload(stream, filename, upload, max_bytes)
        out = Path(tmp) / "out"
        try:
            record = detect(model_uri, source, out, threads=threads)
        except DatasetError as err:  # name the upload, not the temporary file that is about to go
            raise DatasetError(str(err).replace(str(source), source.name)) from None
        record["input"] = source.name  # not the temporary path, which is gone when this returns
        viewer = out / "viewer"
        boxes = read_json(out / "boxes.json")["videos"][source.stem]
        return Detection(
            record=record,
            scores=[
                {"frame": int(row["frame"]), "raw": _float(row["raw"]), "score": _float(row["score"])}
                for row in _read_csv(out / "scores.csv")
            ],
            boxes=[{"frame": t, **box} for t, frame in enumerate(boxes) for box in frame],
            video=(viewer / "videos" / f"{source.stem}.mp4").read_bytes(),
            viewer_zip=zip_folder(viewer, source.stem + "-viewer"),
            name=source.stem,
        )


def _float(text: str) -> float | None:
    return float(text) if text else None  # detect writes an unscored frame's score as ""


def _read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def zip_folder(folder: str | Path, root: str) -> bytes:
    """The files under ``folder`` as a zip whose entries sit under ``root/`` (unzipping makes one folder)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, f"{root}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()
