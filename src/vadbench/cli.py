"""Command line: ``vadbench summary RESULT.json ...`` prints aggregated AUCs and how to browse the runs."""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vadbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print aggregated AUC JSON files and the mlflow ui command")
    p.add_argument("results", nargs="+", help="results/{dataset}_{variant}_auc.json files")
    p.add_argument("--tracking-uri", default="sqlite:///results/mlflow.db",
                   help="store to point mlflow ui at (MLFLOW_TRACKING_URI overrides)")
    args = parser.parse_args(argv)
    print(summary(args.results, resolve_tracking_uri(args.tracking_uri)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
