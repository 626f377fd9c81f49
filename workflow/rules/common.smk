# Config validation, wildcard constraints and the get_*() lookups every rule uses.
import os

from vadbench.config import (
    AMMC_MODELS,
    STREAMS,
    localization_of,
    model_owner,
    preset_of,
    protocol_of,
    run_config,
    stream_run_config,
    streams_needed,
    streams_owner,
    validate_config,
)
from vadbench.snakelock import recover_stale_locks
from vadbench.tracking import experiment_name

# the schema is found relative to this file, not to workflow.basedir: when vadbench is used as a
# module from another workflow, workflow.basedir is the folder of that workflow's Snakefile
validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
# a lock left by a Snakemake that was killed (kill -9, OOM) would stop this run until --unlock
if workflow.is_main_process:
    recover_stale_locks(os.getcwd())

DATASETS = sorted(config["datasets"])
VARIANTS = sorted(config["variants"])
SEEDS = [int(s) for s in config["seeds"]]


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    preset="|".join(sorted(config["presets"])),
    seed=r"\d+",
    stream="|".join(STREAMS),


SUMMARY_DATASETS = list(config["summary"]["datasets"])
SUMMARY_VARIANTS = list(config["summary"].get("variants", VARIANTS))


def get_final_outputs():
    """The summary tables and every seed's plots of the (dataset, variant) pairs in ``summary``."""
    return ["results/summary.md", "results/summary.csv"] + expand(
        "results/{dataset}/{variant}/seed{seed}/plots",
        dataset=SUMMARY_DATASETS,
        variant=SUMMARY_VARIANTS,
        seed=SEEDS,
    )


def get_summary_results(wildcards):
    return expand("results/{dataset}_{variant}_auc.json", dataset=SUMMARY_DATASETS, variant=SUMMARY_VARIANTS)


def get_preset(wildcards):
    return preset_of(config, wildcards.dataset, wildcards.variant)[1]


def get_layout_options(wildcards):
    """Options of the dataset's layout reader; ``layout_options`` is keyed by layout name so that
    pointing a dataset at a copy in another layout needs no other change."""
    dataset = config["datasets"][wildcards.dataset]
    return dataset.get("layout_options", {}).get(dataset["layout"], {})


def get_arrays(wildcards):
    name, _ = preset_of(config, wildcards.dataset, wildcards.variant)
    return f"resources/{wildcards.dataset}/{name}/arrays"


def get_index(wildcards):
    name, _ = preset_of(config, wildcards.dataset, wildcards.variant)
    return f"resources/{wildcards.dataset}/{name}/clips.npz"


def get_run(wildcards):
    return run_config(config, wildcards.dataset, wildcards.variant, int(wildcards.seed))


def get_flow(wildcards):
    """The optical flow of the variant's arrays (AMMC-Net); nothing for models that read none."""
    if config["variants"][wildcards.variant]["model"] not in AMMC_MODELS:
        return []
    name, _ = preset_of(config, wildcards.dataset, wildcards.variant)
    return f"resources/{wildcards.dataset}/{name}/flow"


def get_stream_models(wildcards):
    """The stage-1 streams an AMMC-Net ``train`` job starts from (or promotes), trained under the
    variant that owns them (``streams_from``), so several stage-2 variants share one pair."""
    owner = streams_owner(config, wildcards.variant)
    return [
        f"results/{wildcards.dataset}/{owner}/seed{wildcards.seed}/stream_{stream}.pt"
        for stream in streams_needed(config, wildcards.variant)
    ]


def get_source_model(wildcards):
    """The trained model a ``model_from`` variant's ``train`` job takes over instead of training."""
    owner = model_owner(config, wildcards.variant)
    if owner == wildcards.variant:
        return []
    return [f"results/{wildcards.dataset}/{owner}/seed{wildcards.seed}/model.pt"]


def get_stream_run(wildcards):
    return stream_run_config(config, wildcards.dataset, wildcards.variant, int(wildcards.seed), wildcards.stream)


def get_protocol(wildcards):
    return protocol_of(config, wildcards.dataset, wildcards.variant).to_dict()


def get_experiment(wildcards):
    return experiment_name(config["mlflow"]["experiment"], wildcards.dataset)


def get_seed_aucs(wildcards):
    return expand(
        "results/{dataset}/{variant}/seed{seed}/auc.json",
        dataset=wildcards.dataset,
        variant=wildcards.variant,
        seed=SEEDS,
    )


def get_localization(wildcards):
    return localization_of(config, wildcards.dataset)


def get_localization_inputs(wildcards):
    """The auc job's maps and boxes (pixel-level metrics where the dataset has masks), when on."""
    if not get_localization(wildcards)["enabled"]:
        return {}
    run = f"results/{wildcards.dataset}/{wildcards.variant}/seed{wildcards.seed}"
    return {"maps": f"{run}/maps", "boxes": f"{run}/boxes.json", "frames": f"resources/{wildcards.dataset}/frames"}


def get_seed_dirs(wildcards):
    """Every seed's folder of a (dataset, variant)."""
    return expand(
        "results/{dataset}/{variant}/seed{seed}",
        dataset=wildcards.dataset,
        variant=wildcards.variant,
        seed=SEEDS,
    )


def get_track_inputs(wildcards):
    """What the track job logs of every seed: its AUCs and plots, and its viewer page and boxes
    when localization is on."""
    seeds = get_seed_dirs(wildcards)
    inputs = {"aucs": [f"{s}/auc.json" for s in seeds], "plots": [f"{s}/plots" for s in seeds]}
    if get_localization(wildcards)["enabled"]:
        inputs |= {"viewers": [f"{s}/viewer" for s in seeds], "boxes": [f"{s}/boxes.csv" for s in seeds]}
    return inputs


def get_existing_viewers(wildcards):
    """The viewer pages already in results/: the index lists everything there (rerun it after a run)."""
    found = glob_wildcards("results/{dataset}/{variant}/seed{seed}/viewer/viewer.json")
    return sorted(
        {
            f"results/{d}/{v}/seed{s}/viewer"
            for d, v, s in zip(found.dataset, found.variant, found.seed)
            if d in DATASETS and v in VARIANTS
        }
    )
