"""AMMC-Net: shapes, the EMA codebook, the losses and the G/D training step against hand computations."""

import contextlib
import math

import pytest
import torch

from vadbench.clips import FlowClips
from vadbench.models.ammc import (
    AMMCNet,
    AMMCStream,
    Bridge,
    PixelDiscriminator,
    UNetVQ,
    VQMemory,
    gradient_loss,
    intensity_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    psnr,
)

TINY = dict(widths=(4, 8, 8, 8), n_embed=8, embed_dim=4, k=2, discriminator_widths=(8, 8, 8))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions are faster on one thread (and do not fight other tests for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def random_clips(b=2, c=1, t=5, size=32):
    return FlowClips(torch.rand(b, c, t, size, size) * 2 - 1, torch.rand(b, 2, t - 1, size, size) * 2 - 1)


def moving_square(b=2, t=5, size=32):
    """A bright square moving 2 px right per frame on a dark background, with a constant flow."""
    frames = -torch.ones(b, 1, t, size, size)
    for i in range(t):
        frames[:, :, i, 8:16, 4 + 2 * i : 12 + 2 * i] = 1.0
    flows = torch.zeros(b, 2, t - 1, size, size)
    flows[:, 0] = 0.5
    return FlowClips(frames, flows)


def optimizers_for(model, lr=1e-3):
    return {
        name: torch.optim.Adam(group["params"], lr=lr * group["lr_scale"])
        for name, group in model.parameter_groups().items()
    }


def no_autocast():
    return contextlib.nullcontext()


def snapshot(params):
    return [p.detach().clone() for p in params]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("channels", [1, 3])
def test_appearance_stream_predicts_the_last_frame_from_the_stacked_others(channels):
    clips = random_clips(c=channels)
    model = AMMCStream(in_channels=channels, stream="appearance", **TINY)
    inputs, target = model.split(clips)
    assert inputs.shape == (2, 4 * channels, 32, 32)
    # frame-major: frame 0's channels, then frame 1's, ...
    assert torch.equal(inputs, torch.cat([clips.frames[:, :, i] for i in range(4)], dim=1))
    assert torch.equal(target, clips.frames[:, :, -1])
    prediction, target, commit = model(clips)
    assert prediction.shape == target.shape == (2, channels, 32, 32)
    assert commit.shape == (2,)
    assert prediction.abs().max() < 1
    assert model.discriminator(prediction).shape == (2, 1, 10, 10)  # 32 -> 17 -> 9 -> 10 (two stride-2 layers)


def test_motion_stream_predicts_the_last_flow_from_the_others():
    clips = random_clips()
    model = AMMCStream(stream="motion", **TINY)
    inputs, target = model.split(clips)
    assert inputs.shape == (2, 6, 32, 32)
    assert torch.equal(inputs, torch.cat([clips.flows[:, :, i] for i in range(3)], dim=1))
    assert torch.equal(target, clips.flows[:, :, -1])  # op[:, -1], not the official test's op[:, :-1]
    prediction, _, commit = model(clips)
    assert prediction.shape == (2, 2, 32, 32) and commit.shape == (2,)


def test_unet_bridge_and_joint_model_shapes():
    unet = UNetVQ(4, 1, **{k: v for k, v in TINY.items() if k != "discriminator_widths"})
    z, skips, commit = unet.encode(torch.randn(2, 4, 32, 32))
    assert z.shape == (2, 8, 4, 4) and commit.shape == (2,)
    assert [tuple(s.shape) for s in skips] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 8, 8, 8)]
    assert unet.decode(z, skips).shape == (2, 1, 32, 32)
    bridge = Bridge(8)
    z_a, z_m = bridge(z, torch.randn_like(z))
    assert z_a.shape == z_m.shape == z.shape
    rgb, rgb_target, flow, flow_target, commit_a, commit_m = AMMCNet(in_channels=3, **TINY)(random_clips(c=3))
    assert rgb.shape == rgb_target.shape == (2, 3, 32, 32)
    assert flow.shape == flow_target.shape == (2, 2, 32, 32)
    assert commit_a.shape == commit_m.shape == (2,)


def test_paper_discriminator_gives_a_patch_map():
    assert PixelDiscriminator(3)(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 10, 10)
    with pytest.raises(ValueError, match="repeat the last"):
        PixelDiscriminator(3, (8, 16))


def test_clips_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="5 frames"):
        AMMCNet(**TINY)(random_clips(t=4))
    with pytest.raises(ValueError, match="flows"):
        AMMCNet(**TINY)(FlowClips(torch.zeros(1, 1, 5, 32, 32), torch.zeros(1, 2, 5, 32, 32)))


# ----------------------------------------------------------------------------- memory


def test_ema_codebook_update_matches_the_formula():
    memory = VQMemory(n_embed=3, dim=2, k=2, decay=0.9, eps=1e-5)
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    code_sum = torch.tensor([[0.5, 0.5], [2.0, 0.0], [0.0, 1.5]])
    cluster_size = torch.tensor([1.0, 2.0, 0.5])
    memory.codebook.copy_(codebook)
    memory.code_sum.copy_(code_sum)
    memory.cluster_size.copy_(cluster_size)
    # three positions (1 x 3 map): the first is nearest code 0, the others code 1
    vectors = torch.tensor([[0.1, 0.1], [0.9, 0.2], [0.8, -0.1]])
    z = vectors.t().reshape(1, 2, 1, 3)
    memory.train()
    retrieved, top1, commit = memory(z)

    counts = torch.tensor([1.0, 2.0, 0.0])
    sums = torch.tensor([[0.1, 0.1], [1.7, 0.1], [0.0, 0.0]])
    new_size = 0.9 * cluster_size + 0.1 * counts
    new_sum = 0.9 * code_sum + 0.1 * sums
    n = new_size.sum()
    smoothed = (new_size + 1e-5) / (n + 3 * 1e-5) * n
    assert torch.allclose(memory.cluster_size, new_size)
    assert torch.allclose(memory.code_sum, new_sum)
    assert torch.allclose(memory.codebook, new_sum / smoothed[:, None])
    # retrieval and commit use the codebook from before the update
    assert top1.tolist() == [[[0, 1, 1]]]
    e1 = codebook[[0, 1, 1]]
    assert torch.allclose(retrieved[0, :2, 0].t(), e1)
    assert commit.item() == pytest.approx(((e1 - vectors) ** 2).mean().item())


def test_eval_mode_does_not_move_the_codebook():
    memory = VQMemory(n_embed=4, dim=2, k=1).eval()
    before = {k: v.clone() for k, v in memory.state_dict().items()}
    memory(torch.randn(2, 2, 3, 3))
    assert all(torch.equal(before[k], v) for k, v in memory.state_dict().items())


def test_top2_retrieval_is_nearest_first_and_carries_no_gradient():
    memory = VQMemory(n_embed=4, dim=1, k=2).eval()
    memory.codebook.copy_(torch.tensor([[0.0], [1.0], [3.0], [6.0]]))
    z = torch.tensor([2.4, 0.4, 5.0]).reshape(1, 1, 1, 3).requires_grad_(True)
    retrieved, top1, commit = memory(z)
    assert retrieved.shape == (1, 2, 1, 3)
    assert retrieved[0, 0, 0].tolist() == [3.0, 0.0, 6.0]  # nearest
    assert retrieved[0, 1, 0].tolist() == [1.0, 1.0, 3.0]  # second nearest
    assert top1.tolist() == [[[2, 0, 3]]]
    assert not retrieved.requires_grad  # no straight-through, as the official code
    commit.sum().backward()
    expected = 2 * (torch.tensor([2.4, 0.4, 5.0]) - torch.tensor([3.0, 0.0, 6.0])) / 3
    assert torch.allclose(z.grad.flatten(), expected)
    assert commit.item() == pytest.approx((0.6**2 + 0.4**2 + 1.0) / 3)


# ----------------------------------------------------------------------------- losses


def test_intensity_loss_is_the_mean_channel_norm():
    prediction = torch.tensor([[[[3.0, 1.0]], [[4.0, 2.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[0.0, 1.0]], [[0.0, 2.0]]]])
    assert intensity_loss(prediction, target).item() == pytest.approx((5.0 + 0.0) / 2)


def test_gradient_loss_uses_the_official_padded_channel_summed_gradient():
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    target = torch.zeros(1, 1, 2, 2)
    # dx = [[1-0, 2-1], [3-0, 5-3]], dy = [[1-0, 2-0], [3-1, 5-2]] (zero left / top padding)
    assert gradient_loss(prediction, target).item() == pytest.approx((2 + 3 + 5 + 5) / 4)
    # channels are summed before the gradient: opposite channels cancel
    opposite = torch.cat([prediction, -prediction], dim=1)
    assert gradient_loss(opposite, torch.zeros(1, 2, 2, 2)).item() == 0.0


def test_lsgan_losses():
    assert lsgan_generator_loss(torch.tensor([0.0, 1.0, 3.0])).item() == pytest.approx((1 + 0 + 4) / 3 / 2)
    d_real, d_fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert lsgan_discriminator_loss(d_real, d_fake).item() == pytest.approx(1 / 2 / 2 + 4 / 2 / 2)


def test_psnr_in_unit_space_with_a_clamped_mse():
    target = torch.zeros(2, 1, 4, 4)
    prediction = torch.stack([torch.zeros(1, 4, 4), -torch.ones(1, 4, 4)])
    # sample 0 exact (mse clamped at 1e-10), sample 1 off by 0.5 in [0, 1] space
    assert psnr(prediction, target).tolist() == pytest.approx([100.0, 10 * math.log10(4)], rel=1e-5)


def test_test_terms_give_appearance_psnr_and_commit_per_clip():
    net = AMMCNet(**TINY).eval()
    with torch.no_grad():
        net.appearance.outc.weight.zero_()
        net.appearance.outc.bias.fill_(math.atanh(0.5))  # every predicted pixel is 0.5
        net.appearance.memory_in.weight.zero_()
        net.appearance.memory_in.bias.copy_(torch.tensor([1.0, 2.0, 0.0, 0.0]))  # every query
        codebook = torch.full((8, 4), 10.0)
        codebook[3] = torch.tensor([1.0, 2.0, 0.0, 1.0])
        net.appearance.memory.codebook.copy_(codebook)
    clips = random_clips()
    clips.frames[0, :, -1] = 0.5
    clips.frames[1, :, -1] = -0.5
    terms = net.test_terms(clips)
    assert terms["psnr"].tolist() == pytest.approx([100.0, 10 * math.log10(4)], rel=1e-5)
    assert terms["commit"].tolist() == pytest.approx([0.25, 0.25])
    stream = AMMCStream(**TINY).eval()
    assert stream.test_terms(clips)["psnr"].shape == (2,)
    with pytest.raises(ValueError, match="appearance"):
        AMMCStream(stream="motion", **TINY).eval().test_terms(clips)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "make", [lambda: AMMCNet(**TINY), lambda: AMMCStream(stream="motion", **TINY)], ids=["joint", "motion_stream"]
)
def test_training_step_updates_g_then_d_and_each_step_only_its_own(make):
    model = make().train()
    optimizers = optimizers_for(model)
    g_params = model.parameter_groups()["generator"]["params"]
    d_params = model.parameter_groups()["discriminator"]["params"]
    g0, d0 = snapshot(g_params), snapshot(d_params)
    between = {}
    optimizers["discriminator"].register_step_pre_hook(
        lambda *_: between.update(g=snapshot(g_params), d=snapshot(d_params))
    )
    terms = model.training_step(random_clips(), optimizers, no_autocast)
    assert {"loss", "intensity", "adversarial", "discriminator"} <= set(terms)
    # detached 0-d tensors: the loop sums them on the device, no host wait per batch
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in terms.values())
    assert same(between["d"], d0)  # the generator step (adversarial term included) left D alone
    assert not same(between["g"], g0)  # ... and moved G
    assert same(snapshot(g_params), between["g"])  # the discriminator step left G alone
    assert not same(snapshot(d_params), d0)


def test_validation_loss_in_eval_mode_keeps_codebooks_and_bn_stats():
    net = AMMCNet(**TINY).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss, terms = net.training_loss(random_clips())
    assert loss.requires_grad and terms["loss"].item() == loss.item() and not terms["loss"].requires_grad
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.train().training_loss(random_clips())
    assert not torch.equal(before["appearance.memory.codebook"], net.appearance.memory.codebook)


def test_frozen_streams_train_only_the_bridge_and_the_discriminator():
    net = AMMCNet(freeze_streams=True, **TINY).train()
    assert not net.appearance.training and not net.motion.training and net.bridge.training
    assert {id(p) for p in net.parameter_groups()["generator"]["params"]} == {id(p) for p in net.bridge.parameters()}
    streams = {k: v.clone() for k, v in net.state_dict().items() if k.startswith(("appearance.", "motion."))}
    bridge, disc = snapshot(net.bridge.parameters()), snapshot(net.discriminator.parameters())
    net.training_step(random_clips(), optimizers_for(net), no_autocast)
    state = net.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in streams.items())  # weights, BN stats, codebooks
    assert not same(snapshot(net.bridge.parameters()), bridge)
    assert not same(snapshot(net.discriminator.parameters()), disc)


def test_load_streams_copies_the_stage1_streams():
    clips = random_clips()
    appearance, motion = AMMCStream(stream="appearance", **TINY), AMMCStream(stream="motion", **TINY)
    for stream in (appearance, motion):  # move them off their initialisation, codebooks included
        stream.train().training_step(clips, optimizers_for(stream), no_autocast)
    net = AMMCNet(**TINY)
    net.load_streams(appearance.state_dict(), motion.state_dict())
    with torch.no_grad():  # zero the bridge: its last BN then outputs 0, ReLU keeps it
        for transfer in (net.bridge.motion_to_appearance, net.bridge.appearance_to_motion):
            transfer[4].weight.zero_()
            transfer[4].bias.zero_()
    net.eval(), appearance.eval(), motion.eval()
    with torch.no_grad():
        rgb, _, flow, _, commit_a, commit_m = net(clips)
        rgb_1, _, commit_a1 = appearance(clips)
        flow_1, _, commit_m1 = motion(clips)
    assert torch.allclose(rgb, rgb_1) and torch.allclose(flow, flow_1)
    assert torch.allclose(commit_a, commit_a1) and torch.allclose(commit_m, commit_m1)
    assert same(snapshot(net.discriminator.parameters()), snapshot(appearance.discriminator.parameters()))
    with pytest.raises(ValueError, match="appearance stream"):
        net.load_streams(motion.state_dict(), appearance.state_dict())
    wider = AMMCStream(stream="motion", **{**TINY, "widths": (4, 8, 8, 16)})
    with pytest.raises(ValueError, match="widths"):
        net.load_streams(appearance.state_dict(), wider.state_dict())


def test_state_dict_round_trip_through_weights_only_load(tmp_path):
    net = AMMCNet(**TINY).train()
    net.training_step(random_clips(), optimizers_for(net), no_autocast)
    torch.save(net.state_dict(), tmp_path / "ammc.pt")
    state = torch.load(tmp_path / "ammc.pt", weights_only=True)
    assert {"appearance.memory.codebook", "motion.memory.cluster_size", "appearance.memory.code_sum"} <= set(state)
    torch.manual_seed(1)
    fresh = AMMCNet(**TINY)
    fresh.load_state_dict(state)
    clips = random_clips()
    net.eval(), fresh.eval()
    assert torch.equal(net.test_terms(clips)["psnr"], fresh.test_terms(clips)["psnr"])
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in net.state_dict().items())


def test_a_few_steps_on_constant_motion_reduce_the_generator_loss():
    net = AMMCNet(**TINY).train()
    optimizers = optimizers_for(net, lr=1e-2)
    clips = moving_square()
    losses = [float(net.training_step(clips, optimizers, no_autocast)["loss"]) for _ in range(15)]
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0]
