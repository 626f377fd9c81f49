"""The MemAE memory module and models: shapes, hard shrinkage, entropy, addressing pitfall."""

import math

import pytest
import torch

from vadbench.models import build_model
from vadbench.models.memory import MemoryModule, addressing_entropy, hard_shrink_relu, live_fraction, raw_max_weights


def test_memory_read_has_the_input_shape_and_rows_of_weights_sum_to_one():
    torch.manual_seed(0)
    memory = MemoryModule(num_items=50, dim=8, shrink_threshold=0.0025)
    z = torch.randn(2, 8, 2, 3, 3) * 5
    z_hat, weights = memory(z)
    assert z_hat.shape == z.shape
    assert weights.shape == (2 * 2 * 3 * 3, 50)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(36))


def test_read_out_is_the_weighted_sum_of_items_only():
    memory = MemoryModule(num_items=3, dim=2, shrink_threshold=0)
    with torch.no_grad():
        memory.items.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0]]))
    z = torch.tensor([[1.0, 0.0]]).reshape(1, 2, 1, 1, 1)
    z_hat, weights = memory(z)
    expected = torch.softmax(torch.tensor([10.0, 0.0, -10.0]), dim=0)
    torch.testing.assert_close(weights[0], expected)
    torch.testing.assert_close(z_hat.flatten(), expected @ memory.items.detach())


def test_hard_shrinkage_zeroes_small_weights_and_renormalises():
    w = torch.tensor([[0.5, 0.3, 0.199, 0.001]])
    shrunk = hard_shrink_relu(w, threshold=0.0025)
    assert shrunk[0, 3] == 0
    assert (shrunk[0, :3] > 0).all()
    torch.testing.assert_close(shrunk.sum(dim=1), torch.ones(1))
    # above the threshold the weights keep their proportions (w/(w-l) ~ 1 for w >> l)
    torch.testing.assert_close(shrunk[0, 0] / shrunk[0, 1], torch.tensor(0.5 / 0.3), rtol=1e-2, atol=0)


def test_shrinkage_makes_addressing_sparse():
    torch.manual_seed(0)
    dense = MemoryModule(200, 16, shrink_threshold=0)
    sparse = MemoryModule(200, 16, shrink_threshold=1 / 200)
    sparse.load_state_dict(dense.state_dict())
    z = torch.randn(1, 16, 1, 4, 4) * 3
    _, w_dense = dense(z)
    _, w_sparse = sparse(z)
    assert (w_dense > 0).all()
    assert (w_sparse == 0).float().mean() > 0.5


def test_entropy_of_uniform_and_one_hot_weights():
    n = 2000
    assert addressing_entropy(torch.full((4, n), 1.0 / n)).item() == pytest.approx(math.log(n), rel=1e-5)
    assert addressing_entropy(torch.eye(n)[:4]).item() == pytest.approx(0.0, abs=1e-6)


def test_cosine_addressing_over_2000_items_cannot_pass_the_paper_threshold():
    """The documented pitfall: bounded cosine logits keep every weight near 1/2000 < 0.0025."""
    torch.manual_seed(0)
    memory = MemoryModule(2000, 64, shrink_threshold=0.0025, addressing="cosine")
    _, weights = memory(torch.randn(1, 64, 1, 2, 2))
    assert weights.max() == 0
    dot = MemoryModule(2000, 64, shrink_threshold=0.0025, addressing="dot")
    dot.load_state_dict(memory.state_dict())
    _, weights = dot(torch.randn(1, 64, 1, 2, 2) * 20)
    assert (weights.sum(dim=1) > 0.99).all()


@pytest.mark.parametrize("name", ["memae", "ae"])
def test_models_reconstruct_clips_of_the_input_shape(name):
    torch.manual_seed(0)
    params = {"memory_size": 100} if name == "memae" else {}
    model = build_model(name, in_channels=1, widths=[4, 8, 8, 8], **params)
    x = torch.rand(2, 1, 16, 32, 32) * 2 - 1
    x_hat, weights = model(x)
    assert x_hat.shape == x.shape
    assert (weights is None) == (name == "ae")
    if name == "memae":
        assert weights.shape == (2 * 2 * 2 * 2, 100)
    loss, parts = model.training_loss(x)
    assert loss.item() == pytest.approx(parts["loss"])
    assert ("entropy" in parts) == (name == "memae")
    assert ("live_queries" in parts) == (name == "memae")
    assert model.clip_errors(x).shape == (2,)


def test_clip_error_is_mean_absolute_error_for_one_channel():
    model = build_model("ae", in_channels=1, widths=[4, 8, 8, 8])
    model.eval()
    x = torch.rand(1, 1, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        x_hat, _ = model(x)
    torch.testing.assert_close(model.clip_errors(x), (x_hat - x).abs().mean().reshape(1))


def test_same_seed_builds_identical_weights():
    def build():
        torch.manual_seed(3)
        return build_model("memae", in_channels=1, widths=[4, 8, 8, 8], memory_size=10).state_dict()

    a, b = build(), build()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_live_fraction_counts_queries_that_keep_a_nonzero_weight():
    weights = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
    assert live_fraction(weights) == 0.5


def test_a_query_survives_shrinkage_exactly_when_its_raw_top_weight_passes_lambda():
    torch.manual_seed(0)
    memory = MemoryModule(num_items=200, dim=16, shrink_threshold=1.5 / 200)
    queries = torch.randn(300, 16) * torch.linspace(0.01, 3, 300).unsqueeze(1)  # from uniform to peaked
    top = raw_max_weights(memory, queries)
    assert memory.shrink_threshold == 1.5 / 200  # restored
    survived = memory.address(queries).sum(dim=1) > 0
    assert torch.equal(survived, top > memory.shrink_threshold)
    assert 0 < survived.float().mean() < 1  # both kinds occur, so the equality says something
    torch.testing.assert_close(top, torch.softmax(queries @ memory.items.detach().t(), dim=1).max(dim=1).values)
