"""Detection on any footage: ``vadbench detect --model <model.pt | MLflow URI> --input <video |
frame folder> --out DIR`` scores new video with a trained variant and writes what the DAG writes
for a test video: per-frame scores, boxes, the annotated MP4 and a viewer page.

The input goes through the dataset path: a video file is decoded frame by frame (PyAV, bounded
as every dataset video), a folder of numbered frames is read in order, and each frame is
converted and resized as the model's preset says (:func:`vadbench.arrays.decode_frame`, Pillow
bicubic, ITU-R 601 gray). Scores follow the variant's protocol; the per-video min-max of the
protocol makes a single video's scores relative to that video (as every paper's protocol does).

What the model brings with it: a model that went through the ``maps`` rule was logged to its
MLflow run as an MLflow PyTorch model (``runs:/<id>/model``, pt2 format: torch.export, no
pickle) holding vadbench's own ``model.pt`` (read with ``weights_only=True``) and
``vadbench.json`` (protocol, localisation settings and the box threshold fixed on its training
clips). A local ``model.pt`` finds the same beside it (``scores.npz``, ``maps/manifest.json``).
Without a threshold (a model that never went through ``maps``), the threshold is the same
quantile of the input's own maps, said so in the log and in ``detect.json``; ``--threshold``
overrides both.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vadbench.errors import DatasetError
from vadbench.fileio import atomic_path, read_json, write_csv, write_json
from vadbench.logs import get_logger

log = get_logger("detect")

#: the model's own files inside its MLflow model directory
MODEL_FILE, INFO_FILE = "model.pt", "vadbench.json"
#: protocol of a model whose score file is not at hand: each paper's own, by model
DEFAULT_PROTOCOL = {"memae": "memae", "ae": "memae", "mnad": "mnad", "ammc": "ammc", "ammc_stream": "ammc"}
#: frames read at once (held in memory at the model's size: 50,000 x 256 x 256 gray is 3.3 GB)
MAX_FRAMES = 50_000
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")


# ----------------------------------------------------------------------------- MLflow model


def _map_module(model, offset: int, channels: int, uses_flow: bool):
    """An ``nn.Module`` whose forward is the anomaly map, what ``mlflow.pytorch.load_model`` gives
    back to a user outside vadbench: ``(B, C, T, H, W)`` clips in [-1, 1] -> ``(B, H, W)``
    per-pixel error of the scored frame. For AMMC-Net the input is ``(B, C + 2, T, H, W)``: the
    clip's C channels, then the 2 flow channels with flow t (frame t to t+1, normalised as the
    preset says) at time t and zeros at T-1 (MLflow's pt2 format takes one tensor)."""
    import torch

    from vadbench.clips import FlowClips

    class AnomalyMap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if uses_flow:
                x = FlowClips(x[:, :channels], x[:, channels:, :-1])
            return self.model.error_map(x, offset)[0]

    return AnomalyMap().eval()


def log_detector(tracker, model_path: str | Path, protocol, settings, manifest: dict[str, Any]) -> None:
    """Log the model of ``model_path`` to the tracker's run as ``model/``, in MLflow's PyTorch
    flavour (pt2), with ``model.pt`` and ``vadbench.json`` (what :func:`detect` needs) as extra files."""
    import mlflow.pytorch
    import torch

    from vadbench.training import load_trained

    model, run = load_trained(model_path)
    model.to(memory_format=torch.contiguous_format)  # the exported program takes plain (B, C, T, H, W) arrays
    preset = run["preset"]
    h, w = preset["frame_size"]
    uses_flow = getattr(model, "uses_flow", False)
    # two clips, not one: torch.export specialises a dimension whose example size is 1, and the
    # logged program would refuse every batch but a single clip
    example = torch.zeros(2, preset["channels"] + 2 * uses_flow, preset["clip_length"], h, w)
    module = _map_module(model, protocol.offset, preset["channels"], uses_flow)
    info = {
        "run": run,
        "protocol": protocol.to_dict(),
        "localization": settings.to_dict(),
        "threshold": manifest["threshold"],
        "threshold_rule": manifest["threshold_rule"],
        "measure": manifest["measure"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        info_path = Path(tmp) / INFO_FILE
        info_path.write_text(json.dumps(info, indent=2))
        weights = Path(tmp) / MODEL_FILE
        shutil.copyfile(model_path, weights)
        target = Path(tmp) / "model"
        mlflow.pytorch.save_model(
            module,
            str(target),
            input_example=example.numpy(),
            serialization_format="pt2",
            extra_files=[str(weights), str(info_path)],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "vadbench"],
            metadata={"vadbench_variant": run["variant"], "vadbench_model": run["model"]},
        )
        tracker.log_artifacts(target, "model")
    log.info("logged the %s model to MLflow run %s as model/ (pt2)", run["variant"], tracker.run_id)


# ----------------------------------------------------------------------------- resolving a model


def resolve_model(model: str, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """``(path of a vadbench model.pt, what is known about it)`` for a local file or an MLflow URI.

    Raises:
        DatasetError: the file does not exist, or the URI holds no vadbench model.
    """
    path = Path(model)
    if path.exists():
        if path.is_dir():
            path = path / "extra_files" / MODEL_FILE if (path / "extra_files").is_dir() else path / MODEL_FILE
        return path, _local_info(path)
    if ":" not in model:
        raise DatasetError(
            f"{model}: no such model file. Give a trained model.pt (results/<dataset>/<variant>/seed<s>/model.pt) "
            "or an MLflow model URI such as runs:/<run id>/model"
        )
    import mlflow.artifacts

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model, dst_path=str(workdir)))
    except Exception as err:  # MLflow raises its own and OS errors for a bad URI, store or run
        raise DatasetError(f"{model}: could not fetch this MLflow model ({str(err).splitlines()[0]})") from None
    weights, info = local / "extra_files" / MODEL_FILE, local / "extra_files" / INFO_FILE
    if not weights.is_file():
        raise DatasetError(
            f"{model}: not a vadbench model (no extra_files/{MODEL_FILE}); log it with the maps rule "
            "(mlflow.log_model: true) or give the model.pt"
        )
    return weights, (read_json(info) if info.is_file() else {})


def _local_info(model_path: Path) -> dict[str, Any]:
    """Protocol and threshold from the score and map files the DAG wrote beside a model.pt."""
    info: dict[str, Any] = {}
    scores = model_path.parent / "scores.npz"
    if scores.is_file():
        with np.load(scores, allow_pickle=False) as data:
            info["protocol"] = json.loads(str(data["protocol"]))
    manifest = model_path.parent / "maps" / "manifest.json"
    if manifest.is_file():
        saved = read_json(manifest)
        info.update(threshold=saved["threshold"], threshold_rule=saved["threshold_rule"], measure=saved["measure"])
    return info


# ----------------------------------------------------------------------------- reading the input


def read_input(
    source: str | Path, size: tuple[int, int], channels: int, workdir: Path, resize_filter: str = "pillow_bicubic_aa"
) -> np.ndarray:
    """The frames of a video file or a folder of numbered frames as (T, H, W, C) uint8 at ``size``.

    Raises:
        DatasetError: missing or unreadable input, a folder without numbered frames, an
            undecodable video (each naming the file).
    """
    from vadbench.arrays import decode_frame
    from vadbench.datasets.canonical import ordered_frames

    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder; give a video file or a folder of numbered frames")
    if source.is_dir():
        paths = ordered_frames(source)
    elif source.suffix.lower() in VIDEO_SUFFIXES:
        from vadbench.datasets.video import decode_video

        paths = decode_video(source, workdir / "frames")
    else:
        raise DatasetError(
            f"{source}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames; convert it to one of these"
        )
    if len(paths) > MAX_FRAMES:
        raise DatasetError(
            f"{source}: {len(paths):,} frames, more than vadbench detect reads at once ({MAX_FRAMES:,}, "
            "vadbench.detect.MAX_FRAMES); cut the footage into shorter pieces"
        )
    return np.stack([decode_frame(p, size, channels, resize_filter) for p in paths])


# ----------------------------------------------------------------------------- detection


def detect(
    model: str,
    source: str | Path,
    out_dir: str | Path,
    threshold: float | None = None,
    batch_size: int = 16,
    threads: int = 1,
    video: bool = True,
) -> dict[str, Any]:
    """Score ``source`` with ``model`` and write ``out_dir``: ``scores.csv``, ``boxes.json``,
    ``boxes.csv``, ``maps.npz``, ``detect.json`` and, with ``video``, ``viewer/index.html`` with
    ``viewer/videos/<name>.mp4``.

    Returns:
        The ``detect.json`` record (model, input, frames, protocol, threshold and its origin).

    Raises:
        DatasetError: unreadable input or model, or footage shorter than one clip of the model.
    """
    from vadbench.arrays import save_array
    from vadbench.clips import FlowInput, make_index
    from vadbench.devices import job_device
    from vadbench.host import use_host
    from vadbench.maps import LocalizationSettings, frame_boxes, smooth, video_maps
    from vadbench.protocol import Protocol
    from vadbench.scoring import frame_scores, model_clip_scores
    from vadbench.training import load_trained, preset_layout

    use_host(threads)
    out_dir = Path(out_dir)
    name = Path(source).stem or "input"
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights, info = resolve_model(model, scratch)
        with job_device() as device:
            net, run = load_trained(weights, device)
            preset = run["preset"]
            protocol = (
                Protocol.from_dict(info["protocol"])
                if "protocol" in info
                else Protocol.named(DEFAULT_PROTOCOL[run["model"]], clip_length=preset["clip_length"])
            )
            settings = LocalizationSettings.from_dict(info.get("localization"))
            frames = read_input(
                source,
                tuple(preset["frame_size"]),
                preset["channels"],
                scratch,
                preset.get("resize_filter", "pillow_bicubic_aa"),
            )
            if len(frames) < preset["clip_length"]:
                raise DatasetError(
                    f"{source}: {len(frames)} frames, but model {run['variant']} reads clips of "
                    f"{preset['clip_length']} frames; give a longer video"
                )
            arrays = scratch / "arrays"
            (arrays / "test").mkdir(parents=True)
            save_array(arrays / "test" / f"{name}.npy", frames)
            index = make_index({name: len(frames)}, preset["clip_length"], 1)
            flow = None
            if getattr(net, "uses_flow", False):
                from vadbench.flow import video_flow

                (scratch / "flow" / "test").mkdir(parents=True)
                np.save(scratch / "flow" / "test" / f"{name}.npy", video_flow(frames, preset["flow"]["method"]))
                flow = FlowInput(
                    scratch / "flow", preset["flow"]["normalisation"], preset["flow"].get("max_displacement", 1.0)
                )
            layout = preset_layout(preset)
            errors, _ = model_clip_scores(net, arrays, index, protocol, batch_size, device, flow, layout)
            raw = frame_scores(index.starts, errors, len(frames), protocol)
            from vadbench.clips import ClipLoader

            loader = ClipLoader(arrays, "test", index, batch_size, flow=flow)
            (saved,) = video_maps(net, loader, protocol.offset, settings.measure, device, layout)
            error, output, scored = saved["error"], saved["output"], saved["scored"]
    origin = "training clips of the model (maps rule)"
    if threshold is not None:
        origin = "given (--threshold)"
    elif info.get("threshold") is not None:
        threshold = float(info["threshold"])
    else:
        smoothed = smooth(error[scored], settings.smoothing_sigma)
        threshold = float(np.quantile(smoothed, settings.threshold_quantile))
        origin = f"self-calibrated: the {settings.threshold_quantile} quantile of this input's own maps"
        log.warning("the model carries no box threshold; using %s", origin)
    regions = frame_boxes(error, scored, threshold, settings)
    scores, _ = protocol.apply(raw)
    record = {
        "model": str(model),
        "variant": run["variant"],
        "input": str(source),
        "frames": int(len(frames)),
        "frame_size": list(preset["frame_size"]),
        "protocol": protocol.to_dict(),
        "threshold": threshold,
        "threshold_origin": origin,
        "boxes": int(sum(len(r) for r in regions)),
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_csv(
            tmp / "scores.csv",
            [{"frame": t, "raw": _num(raw[t]), "score": _num(scores[t])} for t in range(len(frames))],
        )
        boxes = [[r.to_dict() for r in frame] for frame in regions]
        write_json(tmp / "boxes.json", {"threshold": threshold, "videos": {name: boxes}})
        write_csv(
            tmp / "boxes.csv",
            [{"video": name, "frame": t, **b} for t, frame in enumerate(boxes) for b in frame],
            fields=["video", "frame", "x0", "y0", "x1", "y1", "area", "score"],
        )
        with open(tmp / "maps.npz", "wb") as f:
            np.savez_compressed(f, error=error, output=output, scored=scored)
        if video:
            _write_views(tmp / "viewer", name, frames, saved, boxes, scores, threshold, settings, record)
        write_json(tmp / "detect.json", record)
    log.info("%s: %d frames scored, %d boxes; results in %s", source, int(scored.sum()), record["boxes"], out_dir)
    return record


def _num(value: float) -> float | str:
    return "" if not np.isfinite(value) else float(value)


def _write_views(out, name, frames, saved, boxes, scores, threshold, settings, record) -> None:
    from vadbench.viewer import write_viewer
    from vadbench.views import video_view

    (out / "videos").mkdir(parents=True)
    labels = np.zeros(len(frames), dtype=np.uint8)  # new footage has no ground truth
    view = video_view(name, frames, saved, boxes, scores, labels, threshold, settings, out / "videos", None)
    meta = {
        "variant": record["variant"],
        "input": record["input"],
        "box_threshold": threshold,
        "threshold_origin": record["threshold_origin"],
    }
    write_viewer(out / "index.html", f"{name}: {record['variant']}", [view], meta)
