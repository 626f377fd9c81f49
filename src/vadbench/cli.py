"""Command line.

``vadbench summary RESULT.json ...`` prints aggregated AUCs and how to browse the runs;
``vadbench evaluate --scores S [--labels L] [protocol options]`` computes the pipeline's metrics
for a score file made by any code; ``vadbench runs [--clean]`` lists the MLflow runs left RUNNING
and marks those whose job is gone as KILLED; ``vadbench detect --model M --input V --out D`` scores
any video or frame folder with a trained model (:mod:`vadbench.detect`); ``vadbench app`` starts
the local web app over the models in the MLflow store (:mod:`vadbench.app`).
"""

from __future__ import annotations

import argparse
import json
import sys

from vadbench.fileio import read_json
from vadbench.tracking import redact_uri, resolve_tracking_uri


def _pct(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.4f} +/- {stat['std']:.4f}"


#: localisation metrics of an aggregated result, shown where the dataset has pixel masks
LOCALIZATION_LABELS = (("pixel_auc", "pixel AUC"), ("pixel_eer", "pixel EER"), ("rbdc", "RBDC"), ("tbdc", "TBDC"))


def summary(paths: list[str], tracking_uri: str) -> str:
    lines = []
    for path in paths:
        r = read_json(path)
        lines.append(
            f"{r['dataset']} {r['variant']}: micro AUC {_pct(r['micro_auc'])} (raw {_pct(r['micro_auc_raw'])}), "
            f"macro AUC {_pct(r['macro_auc'])} over seeds {r['seeds']}, preset {r['preset']['name']}, "
            f"protocol {r['protocol']['name']} (scored frame {r['protocol']['scored_frame_index']}, "
            f"edges {r['protocol']['edges']}, {r['protocol']['normalisation']})  [{path}]"
        )
        where = [
            f"{label} {_pct(r[key])}"
            for key, label in LOCALIZATION_LABELS
            if (r.get(key) or {}).get("mean") is not None
        ]
        if where:
            lines.append(f"  where: {', '.join(where)}")
    lines.append("")
    shown = redact_uri(tracking_uri)
    if tracking_uri.startswith(("http://", "https://")):
        lines.append(f"Browse every run (params, per-epoch losses, AUCs) at {shown}")
    else:
        lines.append("Browse every run (params, per-epoch losses, AUCs) with:")
        lines.append(
            f"  .venv/bin/mlflow ui --backend-store-uri {shown} --port 5000   # then open http://127.0.0.1:5000"
        )
    return "\n".join(lines)


def runs_command(args: argparse.Namespace) -> str:
    from vadbench.tracking import clean_runs, sqlite_path

    uri = resolve_tracking_uri(args.tracking_uri)
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        return f"no MLflow store at {path}"
    dry = args.dry_run or not args.clean
    records = clean_runs(uri, stale_after_h=args.stale_after, dry_run=dry)
    lines = []
    for r in records:
        verdict = ("would mark KILLED" if dry else "marked KILLED") if r["orphan"] else "left RUNNING"
        lines.append(f"{verdict}: run {r['run_id']} ({r['experiment']} / {r['name']}): {r['reason']}")
    orphans = sum(r["orphan"] for r in records)
    lines.append(
        f"{len(records)} RUNNING runs in {redact_uri(uri)}, {orphans} with their job gone"
        + ("" if dry or not orphans else ", marked KILLED")
        + (" (run with --clean to mark them KILLED)" if not args.clean and orphans else "")
    )
    return "\n".join(lines)


def evaluate_table(result: dict) -> str:
    ci = result["micro_auc_ci95"] or {}
    p = result["protocol"]
    lines = [
        f"protocol: {p['name']} (edges {p['edges']}, {p['normalisation']}, smoothing sigma {p['smoothing_sigma']})",
        f"micro AUC      {result['micro_auc']:.6f}"
        + (
            f"   95% CI {ci['low']:.4f}-{ci['high']:.4f} ({ci['samples']} resamples of whole videos)"
            if ci.get("low") is not None
            else ""
        ),
        f"micro AUC raw  {result['micro_auc_raw']:.6f}   (no per-video normalisation)",
        f"macro AUC      {result['macro_auc']:.6f}" if result["macro_auc"] is not None else "macro AUC      n/a",
        f"EER            {result['eer']:.6f}",
        f"AUPR           {result['aupr']:.6f}",
        f"frames scored  {result['frames_scored']} of {result['frames_total']} ({result['anomalous_frames_scored']} anomalous), "
        f"{result['videos']} videos",
        "",
        "video  AUC",
    ]
    lines += [f"{v:<6} {auc:.4f}" for v, auc in result["per_video_auc"].items()]
    lines += [f"{v:<6} n/a (one class)" for v in result["macro_skipped_videos"]]
    return "\n".join(lines)


#: ``--bootstrap`` above this is refused (100k resamples of a large dataset already take minutes).
MAX_BOOTSTRAP = 100_000


def check_evaluate_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range ``vadbench evaluate`` options with a ConfigError naming the option."""
    import math

    from vadbench.errors import ConfigError
    from vadbench.protocol import MAX_SMOOTHING_SIGMA
    from vadbench.scorefiles import MAX_FRAMES_PER_VIDEO

    for option, value in (("--drop-first", args.drop_first), ("--drop-last", args.drop_last)):
        if not 0 <= value <= MAX_FRAMES_PER_VIDEO:
            raise ConfigError(f"{option} {value}: must be a number of frames in 0..{MAX_FRAMES_PER_VIDEO}")
    if not 0 <= args.bootstrap <= MAX_BOOTSTRAP:
        raise ConfigError(f"--bootstrap {args.bootstrap}: must be in 0..{MAX_BOOTSTRAP} resamples (0: no interval)")
    sigma = args.smoothing_sigma
    if sigma is not None and not (math.isfinite(sigma) and 0 <= sigma <= MAX_SMOOTHING_SIGMA):
        raise ConfigError(
            f"--smoothing-sigma {sigma}: must be a finite number of frames in 0..{MAX_SMOOTHING_SIGMA} (0: off)"
        )


def evaluate_command(args: argparse.Namespace) -> dict:
    import numpy as np

    from vadbench.errors import ConfigError
    from vadbench.metrics import evaluate
    from vadbench.protocol import Protocol
    from vadbench.scorefiles import load_pair

    check_evaluate_args(args)
    scores, labels, recorded = load_pair(args.scores, args.labels)
    if args.drop_first or args.drop_last:
        for v in scores:
            scores[v] = scores[v].copy()
            scores[v][: args.drop_first] = np.nan
            if args.drop_last:
                scores[v][-args.drop_last :] = np.nan
    overrides = {
        k: getattr(args, k) for k in ("edges", "normalisation", "smoothing_sigma") if getattr(args, k) is not None
    }
    if args.commit_weight is not None or args.smoothing_mu is not None:
        from vadbench.scoring import recombine_ammc

        base = recorded.to_dict() if recorded is not None else {}
        weights = {
            "commit_weight": args.commit_weight if args.commit_weight is not None else base.get("commit_weight"),
            "smoothing_mu": args.smoothing_mu if args.smoothing_mu is not None else base.get("smoothing_mu"),
        }
        if None in weights.values():
            raise ConfigError("--commit-weight and --smoothing-mu: give both for a file that records neither")
        Protocol.named("ammc", **weights)  # checks the ranges, naming the option
        scores = recombine_ammc(scores, args.scores, **weights)
        overrides.update(weights)
    if recorded is not None and args.protocol is None:
        protocol = Protocol.from_dict({**recorded.to_dict(), **overrides})
    else:
        protocol = Protocol.named(args.protocol or "memae", **overrides)
    return evaluate(scores, labels, protocol, bootstrap_samples=args.bootstrap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vadbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print aggregated AUC JSON files and the mlflow ui command")
    p.add_argument("results", nargs="+", help="results/{dataset}_{variant}_auc.json files")
    p.add_argument(
        "--tracking-uri",
        default="sqlite:///results/mlflow.db",
        help="store to point mlflow ui at (MLFLOW_TRACKING_URI overrides)",
    )
    p.set_defaults(run=lambda a: print(summary(a.results, resolve_tracking_uri(a.tracking_uri))))

    r = sub.add_parser(
        "runs",
        help="list MLflow runs left RUNNING; --clean marks those whose job is gone as KILLED",
        description="A job killed without warning (SIGKILL, a lost node) leaves its MLflow run RUNNING. A run of "
        "this host is orphaned when its job's pid is gone (or now belongs to another process); a run "
        "of another host when its heartbeat tag is older than --stale-after hours.",
    )
    r.add_argument("--clean", action="store_true", help="mark the orphaned runs KILLED")
    r.add_argument("--dry-run", action="store_true", help="with --clean: only say what would be marked")
    r.add_argument(
        "--tracking-uri", default="sqlite:///results/mlflow.db", help="store (MLFLOW_TRACKING_URI overrides)"
    )
    r.add_argument(
        "--stale-after",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="heartbeat age after which a run of another host counts as orphaned (default 24)",
    )
    r.set_defaults(run=lambda a: print(runs_command(a)))

    e = sub.add_parser(
        "evaluate",
        help="metrics of any per-frame score file against any supported label file",
        description="Compute vadbench's metrics (micro AUC with a bootstrap interval over videos, macro AUC, "
        "EER, AUPR, per-video AUC) for per-frame scores (higher = more anomalous; NaN = not scored). "
        "Scores: the score rule's .npz, an .npz of one array per video, a .npy of all videos "
        "concatenated, or a .csv with video,frame,score columns. Labels: Liu .mat, UCSD .m, a "
        "ShanghaiTech test_frame_mask/ folder, vadbench labels.npz or a concatenated .npy.",
    )
    e.add_argument("--scores", required=True, help="score file")
    e.add_argument("--labels", help="label file or folder (not needed for the score rule's .npz)")
    e.add_argument(
        "--protocol", help="named protocol (memae); default: the one recorded in a vadbench score file, else memae"
    )
    e.add_argument("--edges", choices=["drop", "pad"], help="unscored (NaN) frames: left out, or nearest score")
    e.add_argument("--normalisation", choices=["per_video_minmax", "none"])
    e.add_argument("--smoothing-sigma", type=float, help="Gaussian smoothing of each video's scores, frames")
    e.add_argument("--drop-first", type=int, default=0, help="treat the first N frames of every video as unscored")
    e.add_argument("--drop-last", type=int, default=0, help="treat the last N frames of every video as unscored")
    e.add_argument("--commit-weight", type=float, help="AMMC-Net score file: recombine with this lambda (0..1)")
    e.add_argument("--smoothing-mu", type=float, help="AMMC-Net score file: recombine with this mu (0 < mu <= 1)")
    e.add_argument("--bootstrap", type=int, default=1000, help="resamples for the micro-AUC interval (0: none)")
    e.add_argument("--json", action="store_true", help="print the full result as JSON")

    def run_evaluate(a: argparse.Namespace) -> None:
        result = evaluate_command(a)
        print(json.dumps(result, indent=2) if a.json else evaluate_table(result))

    e.set_defaults(run=run_evaluate)

    d = sub.add_parser(
        "detect",
        help="score any video or frame folder with a trained model: scores, boxes, annotated MP4, viewer page",
        description="Frames are converted and resized as the model's preset says and scored under its protocol. "
        "--model is a model.pt of results/ or an MLflow model URI (runs:/<run id>/model, logged by the maps rule).",
    )
    d.add_argument("--model", required=True, help="model.pt or MLflow model URI (runs:/<id>/model)")
    d.add_argument("--input", required=True, help="video file (.avi, .mp4, ...) or folder of numbered frames")
    d.add_argument("--out", required=True, help="output folder (replaced as a whole)")
    d.add_argument(
        "--threshold", type=float, help="box threshold (default: the one fixed on the model's training clips)"
    )
    d.add_argument("--no-video", action="store_true", help="skip the annotated MP4 and the viewer page")
    d.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    d.add_argument(
        "--tracking-uri",
        default="sqlite:///results/mlflow.db",
        help="store of a runs:/ URI (MLFLOW_TRACKING_URI overrides)",
    )

    def run_detect(a: argparse.Namespace) -> None:
        import os

        from vadbench.detect import detect

        os.environ["MLFLOW_TRACKING_URI"] = resolve_tracking_uri(a.tracking_uri)
        record = detect(a.model, a.input, a.out, threshold=a.threshold, threads=a.threads, video=not a.no_video)
        page = f"{a.out}/viewer/index.html" if not a.no_video else None
        print(
            f"{record['input']}: {record['frames']} frames scored by {record['variant']}, {record['boxes']} boxes "
            f"(threshold {record['threshold']:.4g}, {record['threshold_origin']}); results in {a.out}"
            + (f"; open {page}" if page else "")
        )

    d.set_defaults(run=run_detect)

    se = sub.add_parser(
        "search",
        help="table of a configuration search: validation loss, test AUC, the configuration chosen",
        description="Reads model.pt (preset, loss history), auc.json and the train benchmark file of each seed "
        "folder. Per model (the same model on the same clip length) the configuration whose seed-0 run has the "
        "lowest final validation loss is marked chosen; the test AUC is shown, never used.",
    )
    se.add_argument("runs", nargs="+", help="seed folders: results/<dataset>/<variant>/seed<s>")
    se.add_argument("--seed", type=int, default=0, help="the seed whose validation loss decides (default 0)")

    def run_search(a: argparse.Namespace) -> None:
        from vadbench.search import read_entry, search_table

        print(search_table([read_entry(r) for r in a.runs], seed=a.seed))

    se.set_defaults(run=run_search)

    ap = sub.add_parser("app", help="local web app: pick a model from the MLflow store, upload a video, see the views")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8501)
    ap.add_argument(
        "--tracking-uri", default="sqlite:///results/mlflow.db", help="MLflow store (MLFLOW_TRACKING_URI overrides)"
    )

    def run_app(a: argparse.Namespace) -> None:
        from vadbench.app import launch

        launch(resolve_tracking_uri(a.tracking_uri), a.host, a.port)

    ap.set_defaults(run=run_app)
    args = parser.parse_args(argv)
    from vadbench.errors import ConfigError, DatasetError

    try:
        args.run(args)
    except (ConfigError, DatasetError) as err:
        print(f"vadbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
