"""MNAD memory read/update, losses and the test-time score against hand computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vadbench.models import build_model
from vadbench.models.mnad import MNAD, memory_losses, read_memory, update_memory
from vadbench.protocol import Protocol, minmax


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=1)


def test_read_is_a_softmax_mix_of_items():
    memory = unit([1, 0], [0, 1])
    queries = unit([1, 0])
    read, weights = read_memory(queries, memory)
    e = np.exp(1.0)
    assert weights[0].tolist() == pytest.approx([e / (e + 1), 1 / (e + 1)])
    assert read[0].tolist() == pytest.approx([e / (e + 1), 1 / (e + 1)])
    assert not weights.requires_grad


def test_update_moves_items_toward_their_queries_and_keeps_unused_items():
    memory = unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    # two queries near item 0, one near item 1, none for item 2
    queries = unit([1, 0.2, 0], [1, 0, 0.3], [0.1, 1, 0])
    new = update_memory(queries, memory)
    assert torch.equal(new[2], memory[2])  # no query chose it: untouched
    assert torch.allclose(new.norm(dim=1), torch.ones(3, dtype=torch.float64))
    # by hand for item 0: v = softmax over queries of their scores with item 0, divided by its max
    s0 = queries @ memory[0]
    v0 = torch.softmax(s0, 0)
    scale = v0 / v0.max()
    expected0 = F.normalize(memory[0] + scale[0] * queries[0] + scale[1] * queries[1], dim=0)
    assert torch.allclose(new[0], expected0)
    s1 = queries @ memory[1]
    v1 = torch.softmax(s1, 0)
    expected1 = F.normalize(memory[1] + (v1[2] / v1.max()) * queries[2], dim=0)
    assert torch.allclose(new[1], expected1)
    # each moved item is now closer to its queries than before
    assert (queries[:2] @ new[0]).sum() > (queries[:2] @ memory[0]).sum()


def test_losses_on_a_tiny_batch():
    memory = unit([1, 0], [0, 1])
    queries = unit([1, 0], [0.6, 0.8]).requires_grad_(True)
    compactness, separateness = memory_losses(queries, memory)
    # nearest items: query 0 -> item 0 (distance 0), query 1 -> item 1: (0.6^2 + 0.2^2) / 2 dims
    assert compactness.item() == pytest.approx((0 + 0.36 + 0.04) / 4)
    # triplet: max(0, |q - p1| - |q - p2| + 1), averaged
    d0 = 0 - np.sqrt(2) + 1
    d1 = np.sqrt(0.36 + 0.04) - np.sqrt(0.16 + 0.64) + 1
    assert separateness.item() == pytest.approx((max(d0, 0) + max(d1, 0)) / 2, rel=1e-4)
    (compactness + separateness).backward()
    assert queries.grad is not None and memory.grad is None


@pytest.mark.parametrize("t_length", [1, 5])
def test_shapes_memory_is_a_buffer_and_training_updates_it(t_length):
    torch.manual_seed(0)
    model = build_model("mnad", in_channels=1, widths=[4, 8, 8, 16], memory_size=6, t_length=t_length)
    assert "memory" in model.state_dict() and all(p is not model.memory for p in model.parameters())
    x = torch.rand(2, 1, t_length, 32, 32) * 2 - 1
    output, target, queries = model(x)
    assert output.shape == target.shape == (2, 1, 32, 32) and queries.shape == (2 * 4 * 4, 16)
    before = model.memory.clone()
    model.eval()
    model.training_loss(x)
    assert torch.equal(model.memory, before)  # validation does not touch the memory
    model.train()
    loss, parts = model.training_loss(x)
    assert not torch.equal(model.memory, before)
    assert set(parts) == {"loss", "recon", "compactness", "separateness"}
    weights = model.compactness_weight
    parts = {k: v.item() for k, v in parts.items()}  # detached 0-dim tensors, summed by the loop on the device
    assert parts["loss"] == pytest.approx(
        parts["recon"] + weights * (parts["compactness"] + parts["separateness"]), rel=1e-5
    )


def test_prediction_stacks_the_four_input_frames_and_targets_the_fifth():
    model = MNAD(in_channels=2, t_length=5, widths=[4, 8, 8, 16])
    x = torch.arange(2 * 2 * 5 * 8 * 8, dtype=torch.float32).reshape(2, 2, 5, 8, 8)
    inputs, target = model.split(x)
    assert inputs.shape == (2, 8, 8, 8) and torch.equal(target, x[:, :, 4])
    assert torch.equal(inputs[:, 0], x[:, 0, 0]) and torch.equal(inputs[:, 1], x[:, 1, 0])  # frame-major
    assert torch.equal(inputs[:, 6], x[:, 0, 3])


def test_score_formula_by_hand():
    psnr = np.array([30.0, 20.0, 25.0])
    distance = np.array([0.1, 0.3, 0.2])
    alpha = 0.6
    normality = alpha * minmax(psnr) + (1 - alpha) * (1 - minmax(distance))
    assert normality.tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert Protocol.named("mnad").to_dict()["normalisation"] == "none"
    assert Protocol.named("mnad", clip_length=5).offset == 4  # the predicted frame


def test_test_time_update_only_below_the_threshold():
    torch.manual_seed(0)
    model = MNAD(in_channels=1, t_length=1, widths=[4, 8, 8, 16], memory_size=4).eval()
    x = torch.rand(1, 1, 1, 16, 16) * 2 - 1
    memory = model.memory.clone()
    p, d, weighted, kept, top1 = model.test_frame(x, memory, update_threshold=0.0)
    assert kept is memory and top1.shape == (4,)
    _, _, _, moved, _ = model.test_frame(x, memory, update_threshold=weighted + 1)
    assert not torch.equal(moved, memory)
    assert p == pytest.approx(
        10 * np.log10(1 / F.mse_loss((model(x)[0] + 1) / 2, (x[:, :, 0] + 1) / 2).item()), rel=1e-5
    )


@pytest.mark.workflow
def test_both_variants_through_the_real_dag(tmp_path):
    import json

    from conftest import TINY_CONFIG, copy_workflow, run_snakemake
    from mlflow.tracking import MlflowClient

    root = copy_workflow(tmp_path)
    (root / "tiny.yaml").write_text(TINY_CONFIG.replace("seeds: [0, 1]", "seeds: [0]"))
    targets = [
        "results/toy/mnad_pred/seed0/plots",
        "results/toy/mnad_recon/seed0/plots",
        "results/toy_mnad_pred_auc.json",
        "results/toy_mnad_recon_auc.json",
    ]
    run_snakemake(root, *targets)
    pred = json.loads((root / "results/toy/mnad_pred/seed0/auc.json").read_text())
    recon = json.loads((root / "results/toy/mnad_recon/seed0/auc.json").read_text())
    # 3 test videos of 48 frames: prediction never scores the first 4 frames, reconstruction scores all
    assert pred["frames_scored"] == 3 * (48 - 4) and recon["frames_scored"] == 3 * 48
    assert pred["protocol"]["name"] == "mnad" and pred["protocol"]["alpha"] == 0.6
    assert recon["protocol"]["alpha"] == 0.7 and recon["protocol"]["reset_memory_per_video"] is False
    assert 0 <= pred["micro_auc"] <= 1 and pred["micro_auc"] == pred["micro_auc_raw"]
    assert (root / "results/toy/mnad_pred/seed0/plots/memory_usage.png").exists()
    state = torch.load(root / "results/toy/mnad_pred/seed0/model.pt", weights_only=True)
    assert state["state_dict"]["memory"].shape == (10, 16) and state["config"]["model_params"]["t_length"] == 5
    with np.load(root / "results/toy/mnad_pred/seed0/scores.npz") as scores:
        assert scores["memory_usage"].sum() == 3 * (48 - 4) * 4 * 4  # every query of every scored frame
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/results/mlflow.db")
    artifacts = [a.path for a in client.list_artifacts(pred["mlflow_run_id"])]
    assert "memory_items.npy" in artifacts
