"""Command line.

``vadbench summary RESULT.json ...`` prints aggregated AUCs and how to browse the runs;
``vadbench evaluate --scores S [--labels L] [protocol options]`` computes the pipeline's metrics
for a score file made by any code.
"""

from __future__ import annotations

import argparse
import json
import sys

from vadbench.fileio import read_json
from vadbench.tracking import resolve_tracking_uri


def _pct(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.4f} +/- {stat['std']:.4f}"


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
    lines.append("")
    lines.append("Browse every run (params, per-epoch losses, AUCs) with:")
    lines.append(f"  .venv/bin/mlflow ui --backend-store-uri {tracking_uri} --port 5000   # then open http://127.0.0.1:5000")
    return "\n".join(lines)


def evaluate_table(result: dict) -> str:
    ci = result["micro_auc_ci95"] or {}
    p = result["protocol"]
    lines = [
        f"protocol: {p['name']} (edges {p['edges']}, {p['normalisation']}, smoothing sigma {p['smoothing_sigma']})",
        f"micro AUC      {result['micro_auc']:.6f}"
        + (f"   95% CI {ci['low']:.4f}-{ci['high']:.4f} ({ci['samples']} resamples of whole videos)" if ci.get("low") is not None else ""),
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


def evaluate_command(args: argparse.Namespace) -> dict:
    import numpy as np

    from vadbench.metrics import evaluate
    from vadbench.protocol import Protocol
    from vadbench.scorefiles import load_pair

    scores, labels, recorded = load_pair(args.scores, args.labels)
    if args.drop_first or args.drop_last:
        for v in scores:
            scores[v] = scores[v].copy()
            scores[v][: args.drop_first] = np.nan
            if args.drop_last:
                scores[v][-args.drop_last :] = np.nan
    overrides = {k: getattr(args, k) for k in ("edges", "normalisation", "smoothing_sigma") if getattr(args, k) is not None}
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
    p.add_argument("--tracking-uri", default="sqlite:///results/mlflow.db",
                   help="store to point mlflow ui at (MLFLOW_TRACKING_URI overrides)")
    p.set_defaults(run=lambda a: print(summary(a.results, resolve_tracking_uri(a.tracking_uri))))

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
    e.add_argument("--protocol", help="named protocol (memae); default: the one recorded in a vadbench score "
                                      "file, else memae")
    e.add_argument("--edges", choices=["drop", "pad"], help="unscored (NaN) frames: left out, or nearest score")
    e.add_argument("--normalisation", choices=["per_video_minmax", "none"])
    e.add_argument("--smoothing-sigma", type=float, help="Gaussian smoothing of each video's scores, frames")
    e.add_argument("--drop-first", type=int, default=0, help="treat the first N frames of every video as unscored")
    e.add_argument("--drop-last", type=int, default=0, help="treat the last N frames of every video as unscored")
    e.add_argument("--bootstrap", type=int, default=1000, help="resamples for the micro-AUC interval (0: none)")
    e.add_argument("--json", action="store_true", help="print the full result as JSON")

    def run_evaluate(a: argparse.Namespace) -> None:
        result = evaluate_command(a)
        print(json.dumps(result, indent=2) if a.json else evaluate_table(result))

    e.set_defaults(run=run_evaluate)
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
