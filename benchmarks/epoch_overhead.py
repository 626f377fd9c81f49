"""Benchmark (issue 14): where an epoch's wall time goes besides its training steps, read from what
a training job logged to MLflow. Prints seconds per epoch; asserts nothing.

    .venv/bin/python benchmarks/epoch_overhead.py --store results/mlflow.db --run memae-seed0 [--clips 2040]

For epochs 2..N: the time between the MLflow timestamps of two epochs' ``train_loss`` minus the
epoch's training seconds (clips per epoch / its logged ``train_clips_per_s``). What is left is
the validation pass, the checkpoint and the logging of that epoch. Reads the SQLite store
directly (no MLflow import).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="the SQLite file of the tracking URI")
    parser.add_argument("--run", required=True, help="the run's name (the newest of that name), or its id")
    parser.add_argument("--clips", type=int, default=2040, help="training clips per epoch (Ped2 cpu: 2040)")
    args = parser.parse_args()
    db = sqlite3.connect(f"file:{args.store}?mode=ro", uri=True)
    found = db.execute(
        "SELECT run_uuid FROM runs WHERE name = ? OR run_uuid = ? ORDER BY start_time DESC LIMIT 1",
        (args.run, args.run),
    ).fetchone()
    if found is None:
        raise SystemExit(f"{args.store}: no run named {args.run}")
    rows = db.execute(
        "SELECT step, key, value, timestamp FROM metrics WHERE run_uuid = ? "
        "AND key IN ('train_clips_per_s', 'train_loss') ORDER BY step, key",
        (found[0],),
    ).fetchall()
    by_step: dict[int, dict[str, float]] = {}
    for step, key, value, timestamp in rows:
        by_step.setdefault(step, {})[key] = value
        if key == "train_loss":
            by_step[step]["at"] = timestamp / 1000
    steps = sorted(by_step)
    left, training = [], []
    for previous, step in zip(steps, steps[1:]):
        wall = by_step[step]["at"] - by_step[previous]["at"]
        train = args.clips / by_step[step]["train_clips_per_s"]
        left.append(wall - train)
        training.append(train)
        print(f"  epoch {step + 1:3d}: {wall:6.1f} s, training steps {train:6.1f} s, the rest {wall - train:4.1f} s")
    print(
        f"{args.run} ({found[0]}): the rest {statistics.mean(left):.2f} s per epoch on average "
        f"({min(left):.1f}-{max(left):.1f}), {sum(left):.0f} s in all; training steps {sum(training):.0f} s"
    )


if __name__ == "__main__":
    main()
