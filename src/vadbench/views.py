"""What a person looks at: annotated videos and the viewer page of one seed (the ``viewer`` rule),
built from the seed's scores, metrics, maps and boxes and the test videos at the model's size.

The page shows the protocol's per-frame scores (after edges, smoothing and normalisation, so
the curve is what the AUC was computed on), the ground truth and each video's AUC; the videos
(where ``localization.videos`` is on) show the input with its boxes, the reconstruction or
prediction and the heat map, the map divided by twice the box threshold (the threshold sits at
mid-scale, the same colours in every frame and video of the seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vadbench.fileio import atomic_path, read_json
from vadbench.logs import get_logger
from vadbench.maps import LocalizationSettings, load_manifest, load_map

log = get_logger("views")

#: the metrics of auc.json the page lists, in this order
SHOWN = ("micro_auc", "macro_auc", "eer", "aupr", "pixel_auc", "pixel_eer", "rbdc", "tbdc", "mlflow_run_id")


def heat_vmax(threshold: float) -> float:
    """The error drawn at the top of the heat map's colour scale: twice the box threshold."""
    return 2.0 * threshold


def video_view(
    name: str,
    frames: np.ndarray,
    saved: dict[str, np.ndarray],
    boxes: list[list[dict[str, Any]]],
    scores: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    settings: LocalizationSettings,
    videos_dir: Path | None,
    auc: float | None,
):
    """One :class:`vadbench.viewer.ViewerVideo`, rendering its MP4 into ``videos_dir`` if given."""
    from vadbench.viewer import ViewerVideo

    geometry: dict[str, Any] = {}
    mp4 = None
    if videos_dir is not None:
        from vadbench.render import render_video

        geometry = render_video(
            videos_dir / f"{name}.mp4",
            np.asarray(frames),
            saved["output"],
            saved["error"],
            [[(b["x0"], b["y0"], b["x1"], b["y1"]) for b in frame] for frame in boxes],
            scores,
            labels,
            vmax=heat_vmax(threshold),
            scored=saved["scored"],
            fps=settings.fps,
            title=name,
        )
        geometry.pop("path", None)
        mp4 = f"videos/{name}.mp4"
    return ViewerVideo(
        name=name,
        mp4=mp4,
        fps=settings.fps,
        scores=[None if not np.isfinite(s) else float(s) for s in scores],
        labels=[int(v) for v in labels],
        boxes=[[[b["x0"], b["y0"], b["x1"], b["y1"], b["score"]] for b in frame] for frame in boxes],
        auc=auc,
        geometry=geometry,
    )


def build_views(
    scores_path: str | Path,
    metrics: dict[str, Any],
    maps_dir: str | Path,
    boxes_path: str | Path,
    arrays_dir: str | Path,
    settings: LocalizationSettings,
    out_dir: str | Path,
    title: str = "",
) -> Path:
    """Write ``out_dir/index.html`` (and ``out_dir/videos/<video>.mp4`` with ``settings.videos``).

    Returns:
        The page's path. The folder appears whole or not at all.
    """
    from vadbench.arrays import open_videos
    from vadbench.scorefiles import load_scores
    from vadbench.viewer import write_viewer

    saved_scores = load_scores(scores_path)
    protocol = saved_scores["protocol"]
    manifest = load_manifest(maps_dir)
    boxes = read_json(boxes_path)["videos"]
    videos = saved_scores["videos"]
    frames = dict(zip(videos, open_videos(arrays_dir, "test", videos)))
    per_video = metrics.get("per_video_auc") or {}
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        videos_dir = tmp / "videos" if settings.videos else None
        if videos_dir is not None:
            videos_dir.mkdir(parents=True)
        views = []
        for name in videos:
            scores, _ = protocol.apply(saved_scores["raw"][name])
            views.append(
                video_view(
                    name,
                    frames[name],
                    load_map(maps_dir, name),
                    boxes[name],
                    scores,
                    saved_scores["label"][name],
                    manifest["threshold"],
                    settings,
                    videos_dir,
                    per_video.get(name),
                )
            )
        meta = {k: metrics.get(k) for k in SHOWN if k in metrics}
        meta.update(box_threshold=manifest["threshold"], map_measure=manifest["measure"])
        write_viewer(tmp / "index.html", title, views, meta)
    log.info("viewer page %s with %d videos%s", out_dir / "index.html", len(views), " and MP4s" * settings.videos)
    return out_dir / "index.html"
