"""``results/summary.md`` and ``summary.csv``: our AUCs over seeds beside the papers' (the ``summary`` rule).

One row per (dataset, variant) asked for in config ``summary``. The published figures live in
``config/papers.yaml`` with their citation, so the gap column says where each number comes from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vadbench.errors import ConfigError
from vadbench.fileio import atomic_path, read_json, write_csv

COLUMNS = (
    "dataset",
    "variant",
    "preset",
    "seeds",
    "micro_auc",
    "macro_auc",
    "eer",
    "aupr",
    "pixel_auc",
    "rbdc",
    "tbdc",
    "paper_auc",
    "gap",
    "paper_source",
    "protocol",
)


def load_papers(path: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The published AUCs file, checked: every entry needs a numeric ``auc`` and a ``source``."""
    try:
        papers = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the published-AUC file ({err})") from None
    for dataset, variants in papers.items():
        for variant, entry in (variants or {}).items():
            if not isinstance(entry, dict) or not isinstance(entry.get("auc"), (int, float)) or not entry.get("source"):
                raise ConfigError(f"{path}: {dataset}.{variant} needs a numeric 'auc' (in %) and a 'source' citation")
    return papers


def _pm(stat: dict[str, float | None], scale: float = 100.0) -> str:
    if stat is None or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean'] * scale:.1f} +/- {stat['std'] * scale:.1f}"


def summary_rows(result_paths: list[str | Path], papers: dict[str, Any]) -> list[dict[str, str]]:
    """One row per aggregated result; AUCs, EER and AUPR in % (mean +/- std over seeds)."""
    rows = []
    for path in result_paths:
        r = read_json(path)
        paper = papers.get(r["dataset"], {}).get(r["variant"])
        ours = r["micro_auc"]["mean"]
        gap = "" if paper is None or ours is None else f"{ours * 100 - paper['auc']:+.1f}"
        rows.append(
            {
                "dataset": r["dataset"],
                "variant": r["variant"],
                "preset": r["preset"]["name"],
                "seeds": " ".join(str(s) for s in r["seeds"]),
                "micro_auc": _pm(r["micro_auc"]),
                "macro_auc": _pm(r["macro_auc"]),
                "eer": _pm(r.get("eer")),
                "aupr": _pm(r.get("aupr")),
                **{k: _pm(r.get(k)) for k in ("pixel_auc", "rbdc", "tbdc")},
                "paper_auc": ""
                if paper is None
                else f"{paper['auc']:.1f}" + ("" if paper.get("verified", True) else "*"),
                "gap": gap,
                "paper_source": "" if paper is None else paper["source"],
                "protocol": _protocol_text(r["protocol"]),
            }
        )
    return rows


def _protocol_text(p: dict[str, Any]) -> str:
    smoothing = f", smoothing sigma {p['smoothing_sigma']}" if p.get("smoothing_sigma") else ""
    smoothing += f", error {p['error']}" if p.get("error") not in (None, "memae_l2") else ""
    return (
        f"{p['name']}: frame {p['scored_frame_index']} of {p['clip_length']}, edges {p['edges']}, "
        f"{p['normalisation']}{smoothing}"
    )


#: Markdown columns: row key -> header.
MARKDOWN = {
    "dataset": "dataset",
    "variant": "variant",
    "preset": "preset",
    "seeds": "seeds",
    "micro_auc": "micro AUC %",
    "macro_auc": "macro AUC %",
    "eer": "EER %",
    "aupr": "AUPR %",
    "pixel_auc": "pixel AUC %",
    "rbdc": "RBDC %",
    "tbdc": "TBDC %",
    "paper_auc": "paper AUC %",
    "gap": "gap",
    "protocol": "protocol",
}


def to_markdown(rows: list[dict[str, str]]) -> str:
    lines = [
        "# vadbench summary",
        "",
        "Mean +/- sample std over seeds. Micro AUC is the headline (all scored frames of all test videos "
        "in one ROC); macro AUC averages the videos that hold both classes. Gap = ours - paper, in points. "
        "Pixel AUC (UCSD pixel-level criterion), RBDC and TBDC (Ramachandra and Jones, WACV 2020) need pixel "
        "masks: n/a where the dataset has none.",
        "",
        "| " + " | ".join(MARKDOWN.values()) + " |",
        "|" + "---|" * len(MARKDOWN),
    ]
    lines += ["| " + " | ".join(row[k] for k in MARKDOWN) + " |" for row in rows]
    sources = sorted({(row["dataset"], row["variant"], row["paper_source"]) for row in rows if row["paper_source"]})
    if sources:
        lines += ["", "Paper figures (* = not confirmed by a second source, see config/papers.yaml):", ""]
        lines += [f"- {d} {v}: {s}" for d, v, s in sources]
    return "\n".join(lines) + "\n"


BRIEF = {
    "dataset": "dataset",
    "variant": "variant",
    "seeds": "seeds",
    "micro_auc": "micro AUC %",
    "macro_auc": "macro AUC %",
    "paper_auc": "paper %",
    "gap": "gap",
}


def write_summary(
    result_paths: list[str | Path],
    papers_path: str | Path,
    md_path: str | Path,
    csv_path: str | Path,
    brief_path: str | Path,
) -> list[dict[str, str]]:
    """Write the summary as Markdown, as full CSV and as the narrow CSV the report's front page shows."""
    rows = summary_rows(result_paths, load_papers(papers_path))
    write_csv(csv_path, [{k: row[k] for k in COLUMNS} for row in rows])
    write_csv(brief_path, [{title: row[k] for k, title in BRIEF.items()} for row in rows])
    with atomic_path(md_path) as tmp:
        tmp.write_text(to_markdown(rows))
    return rows
