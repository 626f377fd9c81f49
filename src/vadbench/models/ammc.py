"""AMMC-Net: appearance-motion memory consistency, its two stages and its GAN training step.

Cai, Zhang, Liu, Gao and Hao, "Appearance-Motion Memory Consistency Network for Video Anomaly
Detection", AAAI 2021; official code NjuHaoZhang/AMMCNet_AAAI2021 (Code/models/unet.py:
Quantize_topk, enc_quan_dec_res_topk, UNetMem_v7, bridge, twostream; Code/models/pix2pix_networks.py:
PixelDiscriminator; Code/models/losses/losses_utils.py, loss_zoo.py; Code/run_helper/train_helper.py).
Details, hyper-parameters and pitfalls: ../shared/docs/methods.md section 3.

Input is a :class:`vadbench.clips.FlowClips` batch with ``T = t_length`` (5)::

    frames (B, C, T, H, W) in [-1, 1]     flows (B, 2, T-1, H, W), flow t: frame t -> t+1
      0 1 2 3 | 4                           0 1 2 | 3
      appearance input | target             motion input | target (the LAST flow)

Inputs are stacked along channels frame-major, as MNAD.split and the official ``view`` do:
appearance (B, C*(T-1), H, W), motion (B, 2*(T-2), H, W). H, W divisible by 8.

Each stream is a 4-level U-Net (:class:`UNetVQ`) with a VQ memory at its H/8 bottleneck only:
1x1 conv w3->D, k nearest codes (L2) concatenated, 1x1 conv k*D->w3, plus the pre-memory feature.
Stage 1 trains each stream alone with its own discriminator (:class:`AMMCStream`); stage 2
(:class:`AMMCNet`) loads both, adds the AMFT bridge between the post-memory bottlenecks and
trains the whole (or, ``freeze_streams``, the bridge only) with an appearance discriminator.

Decisions taken from the official code (where the paper text is silent or differs):

* the retrieved codes reach the decoder WITHOUT a straight-through estimator: the official
  ``Quantize_topk`` returns the looked-up top-k codes, and its straight-through tensor is only
  the unused third output. The 1x1 conv into the memory learns from the commit loss alone; the
  encoder learns through the residual and the commit loss;
* the codebook is a buffer updated by EMA k-means statistics (VQ-VAE-2), never by gradients.
  As there, ``code_sum`` starts as the codebook while ``cluster_size`` starts at zero, so the
  first updates scale a chosen code to about 0.99^t * init / ((1 - 0.99^t) * count) + mean (large
  commit losses early in training, fading as 0.99^t does), and codes no position has chosen get
  a near-zero smoothed count and are scaled far away: they stay dead. Retrieval and the commit
  loss of a step use the codebook from before that step's update;
* the discriminator is Liu et al.'s (ano_pred) port that AMMC names ``PixelDiscriminator``:
  4x4 convs, stride 2, padding 2, LeakyReLU 0.1, no norm, then a 4x4 stride-1 conv to one
  channel (no sigmoid), not pix2pix's 1x1 pixelGAN;
* the gradient loss uses the official image gradient: a [-1, 1] filter whose input channels are
  summed (one gradient map per image, not per channel), zero padding on the left / top (the
  first column / row is the pixel value itself) and no absolute value inside:
  mean(|d(gt) - d(gen)|) along x plus along y;
* the FlowNet2 flow loss is left out: the official one is ``.detach()``-ed on both sides, so it
  adds a constant and no gradient;
* G/D order: the official code computes D(G(x)) for the generator loss, then steps D on
  (real, G(x).detach()), then steps G, all from one forward. :meth:`training_step` steps G
  first and then D on the same, pre-update, detached prediction: the same update from the same
  parameters, without back-propagating through a discriminator modified in place (which PyTorch
  1.1, the official version, silently allowed).

The motion outputs are not part of the anomaly score: :meth:`AMMCNet.test_terms` returns the
appearance PSNR and the appearance commit loss per clip.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vadbench.clips import FlowClips

PAPER_WIDTHS = (64, 128, 256, 512)
PAPER_DISCRIMINATOR_WIDTHS = (128, 256, 512, 512)
STREAMS = ("appearance", "motion")


# ----------------------------------------------------------------------------- losses


def intensity_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the L2 norm over channels of the difference (official ``L2``).

    Args:
        prediction, target: (B, C, H, W).

    Returns:
        A scalar.
    """
    return torch.linalg.vector_norm(prediction - target, ord=2, dim=1).mean()


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official image gradient: ``(dx, dy)``, each (B, 1, H, W), of a (B, C, H, W) image.

    Channels are summed first (the official filter is one output channel over all input
    channels); ``dx[..., j] = s[..., j] - s[..., j-1]`` with ``s[..., -1] = 0``, likewise ``dy``
    along rows, so the first column (row) holds the channel sum itself.
    """
    s = x.sum(dim=1, keepdim=True)
    dx = s - F.pad(s, (1, 0, 0, 0))[..., :, :-1]
    dy = s - F.pad(s, (0, 0, 1, 0))[..., :-1, :]
    return dx, dy


def gradient_loss(prediction: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Gradient difference loss, mean(|dx gt - dx gen|^alpha + |dy gt - dy gen|^alpha).

    Args:
        prediction, target: (B, C, H, W); gradients as :func:`image_gradients`.
        alpha: exponent (official 1).
    """
    pdx, pdy = image_gradients(prediction)
    tdx, tdy = image_gradients(target)
    return ((tdx - pdx).abs() ** alpha + (tdy - pdy).abs() ** alpha).mean()


def lsgan_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN generator term, mean((D(G(x)) - 1)^2) / 2, for a patch map of any shape."""
    return ((d_fake - 1) ** 2).mean() / 2


def lsgan_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss, mean((D(real) - 1)^2) / 2 + mean(D(fake)^2) / 2."""
    return ((d_real - 1) ** 2).mean() / 2 + (d_fake**2).mean() / 2


def squared_error_map(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, H, W) squared error in [0, 1] space, mean over channels: the map whose mean is the
    MSE behind :func:`psnr`, for (B, C, H, W) images in [-1, 1]."""
    return (((prediction.float() - target.float()) / 2) ** 2).mean(dim=1)


def _check_last(offset: int, t_length: int) -> None:
    if offset != t_length - 1:
        raise ValueError(f"AMMC-Net scores the last frame of a clip (index {t_length - 1}), not index {offset}")


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR (B,) of (B, C, H, W) images in [-1, 1], computed in [0, 1] space.

    10 log10(1 / mse), mse over (C, H, W) clamped at 1e-10 (the official ``psnr_error`` per clip).
    """
    error = ((prediction.float() + 1) / 2 - (target.float() + 1) / 2) ** 2
    mse = error.flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


# ----------------------------------------------------------------------------- memory


class VQMemory(nn.Module):
    """Top-k VQ memory with an EMA k-means codebook (official ``Quantize_topk``).

    Args:
        n_embed: number of codes N (paper 256).
        dim: code dimension D (paper 64).
        k: codes retrieved per position (paper 2).
        decay: EMA decay of the cluster statistics (0.99).
        eps: Laplace smoothing of the cluster sizes (1e-5).

    Buffers (all in the state_dict): ``codebook`` (N, D), drawn N(0, 1) from torch's global
    generator; ``cluster_size`` (N,), zeros; ``code_sum`` (N, D), a copy of the codebook.

    In training mode, after retrieval, with ``n_i`` the number of positions whose nearest code
    is i and ``s_i`` the sum of those positions' vectors::

        cluster_size <- decay * cluster_size + (1 - decay) * n
        code_sum     <- decay * code_sum     + (1 - decay) * s
        smoothed_i    = (cluster_size_i + eps) / (sum(cluster_size) + N * eps) * sum(cluster_size)
        codebook_i    = code_sum_i / smoothed_i

    Gradients never reach the codebook, and the retrieved codes carry no gradient to ``z``
    (no straight-through, as the official code): ``z`` learns only from the commit loss.
    The search and the update run in float32 even under autocast.
    """

    def __init__(self, n_embed: int = 256, dim: int = 64, k: int = 2, decay: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__()
        if not 1 <= k <= n_embed:
            raise ValueError(f"VQMemory retrieves k={k} codes of {n_embed}; k must be between 1 and n_embed")
        self.n_embed, self.dim, self.k, self.decay, self.eps = n_embed, dim, k, decay, eps
        codebook = torch.randn(n_embed, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.zeros(n_embed))
        self.register_buffer("code_sum", codebook.clone())

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Retrieve the k nearest codes of every position of ``z``.

        Args:
            z: (B, D, h, w) memory queries.

        Returns:
            ``(retrieved (B, k*D, h, w), top-1 indices (B, h, w), commit (B,))``: the k codes
            concatenated nearest first (channels ``j*D:(j+1)*D`` hold the (j+1)-th nearest),
            detached; commit = mean over positions and channels of (e_top1 - z)^2, with the
            gradient to ``z`` only.
        """
        b, d, h, w = z.shape
        if d != self.dim:
            raise ValueError(f"VQMemory of dimension {self.dim} got queries with {d} channels")
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = z.float().permute(0, 2, 3, 1).reshape(-1, d)  # (K, D), K = B*h*w
            with torch.no_grad():
                codebook = self.codebook
                query = flat.detach()
                dist = query.pow(2).sum(1, keepdim=True) - 2 * query @ codebook.t() + codebook.pow(2).sum(1)[None]
                nearest = dist.topk(self.k, dim=1, largest=False, sorted=True).indices  # (K, k)
                codes = codebook[nearest]  # (K, k, D): a copy, unaffected by the update below
            top1 = nearest[:, 0]
            commit = (codes[:, 0] - flat).pow(2).reshape(b, h * w * d).mean(dim=1)
            if self.training:
                self._update(query, top1)
        retrieved = codes.reshape(b, h, w, self.k * d).permute(0, 3, 1, 2).to(z.dtype)
        return retrieved, top1.reshape(b, h, w), commit

    @torch.no_grad()
    def _update(self, query: torch.Tensor, top1: torch.Tensor) -> None:
        onehot = F.one_hot(top1, self.n_embed).to(query.dtype)  # (K, N); a matmul, deterministic on GPU
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.code_sum.mul_(self.decay).add_(onehot.t() @ query, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.n_embed * self.eps) * total
        self.codebook.copy_(self.code_sum / smoothed[:, None])


# ----------------------------------------------------------------------------- networks


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """[Conv3x3 (no bias) -> BN -> ReLU] x 2, spatial size kept."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Up(nn.Module):
    """ConvTranspose 2x2 stride 2 (cin -> cin // 2), pad to the skip, concat [skip, up], double_conv."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = double_conv(skip + cin // 2, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = F.pad(x, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
        return self.conv(torch.cat([skip, x], dim=1))


class UNetVQ(nn.Module):
    """One AMMC stream: a 4-level U-Net with the VQ memory at its bottleneck (official UNetMem_v7).

    Args:
        in_channels: input channels (appearance C*(T-1), motion 2*(T-2)).
        out_channels: output channels (C or 2); the output is tanh, in (-1, 1).
        widths: (w0, w1, w2, w3), paper (64, 128, 256, 512); w3 at H/8.
        n_embed, embed_dim, k: the memory (:class:`VQMemory`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int] = PAPER_WIDTHS,
        n_embed: int = 256,
        embed_dim: int = 64,
        k: int = 2,
    ) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"UNetVQ needs 4 widths, got {list(widths)}")
        w0, w1, w2, w3 = widths
        self.inc = double_conv(in_channels, w0)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), double_conv(w0, w1))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), double_conv(w1, w2))
        self.down3 = nn.Sequential(nn.MaxPool2d(2), double_conv(w2, w3))
        self.memory_in = nn.Conv2d(w3, embed_dim, 1)
        self.memory = VQMemory(n_embed, embed_dim, k)
        self.memory_out = nn.Conv2d(k * embed_dim, w3, 1)
        self.up1, self.up2, self.up3 = _Up(w3, w2, w2), _Up(w2, w1, w1), _Up(w1, w0, w0)
        self.outc = nn.Conv2d(w0, out_channels, 3, padding=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """``(bottleneck (B, w3, H/8, W/8) = memory_out(codes) + feature, [skip H, H/2, H/4], commit (B,))``."""
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        feature = self.down3(x3)
        retrieved, _, commit = self.memory(self.memory_in(feature))
        return self.memory_out(retrieved) + feature, [x1, x2, x3], commit

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """(B, w3, H/8, W/8) bottleneck and the encoder's skips -> (B, out, H, W) in (-1, 1)."""
        x1, x2, x3 = skips
        h = self.up3(self.up2(self.up1(z, x3), x2), x1)
        return torch.tanh(self.outc(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output (B, out, H, W), commit (B,))``."""
        z, skips, commit = self.encode(x)
        return self.decode(z, skips), commit


class Bridge(nn.Module):
    """AMFT: z_a' = z_a + T_m2a(z_m), z_m' = z_m + T_a2m(z_a), each T a double_conv(w3 -> w3)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.motion_to_appearance = double_conv(width, width)
        self.appearance_to_motion = double_conv(width, width)

    def forward(self, z_a: torch.Tensor, z_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two (B, w3, h, w) bottlenecks -> the bridged pair, both from the un-bridged inputs."""
        return z_a + self.motion_to_appearance(z_m), z_m + self.appearance_to_motion(z_a)


class PixelDiscriminator(nn.Module):
    """The discriminator AMMC calls ``PixelDiscriminator`` (Liu et al.'s, ``use_norm=False``).

    Conv 4x4 stride 2 padding 2 (in -> f0), LeakyReLU 0.1, then the same for f0 -> f1 -> ... ->
    f[-2], then Conv 4x4 stride 1 padding 2 (f[-1] -> 1); biases everywhere, no norm, no sigmoid.
    As in the official code the last filter count is only the input width of the output conv,
    so it must equal the one before (paper (128, 256, 512, 512): three stride-2 layers; a 256x256
    frame gives a (B, 1, 34, 34) patch map, 32x32 a (B, 1, 6, 6) one).
    """

    def __init__(self, in_channels: int, filters: Sequence[int] = PAPER_DISCRIMINATOR_WIDTHS) -> None:
        super().__init__()
        filters = list(filters)
        if len(filters) < 2 or filters[-1] != filters[-2]:
            raise ValueError(
                f"discriminator filters {filters}: the official network feeds the last count to the "
                "output conv after a layer of the one before, so give at least two and repeat the last "
                "(paper: [128, 256, 512, 512])"
            )
        layers: list[nn.Module] = []
        for cin, cout in zip([in_channels] + filters[:-2], filters[:-1]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=2), nn.LeakyReLU(0.1, inplace=True)]
        layers.append(nn.Conv2d(filters[-1], 1, 4, stride=1, padding=2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1, h, w) real/fake scores (LSGAN targets 1 and 0)."""
        return self.net(x)


# ----------------------------------------------------------------------------- helpers


def _stack(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T*C, H, W), frame-major (frame 0's channels first)."""
    return x.transpose(1, 2).flatten(1, 2)


def _check_clips(clips: FlowClips, in_channels: int, t_length: int) -> None:
    frames, flows = clips.frames, clips.flows
    if frames.dim() != 5 or frames.shape[1] != in_channels or frames.shape[2] != t_length:
        raise ValueError(
            f"AMMC-Net built for {in_channels}-channel clips of {t_length} frames (B, C, T, H, W) got frames "
            f"of shape {tuple(frames.shape)}; check the preset's channels and clip_length"
        )
    if flows.dim() != 5 or flows.shape[1] != 2 or flows.shape[2] != t_length - 1:
        raise ValueError(
            f"AMMC-Net needs {t_length - 1} flows (B, 2, T-1, H, W) per {t_length}-frame clip, got flows of "
            f"shape {tuple(flows.shape)}; recompute the flow for this clip length"
        )


@contextlib.contextmanager
def _no_grad_for(module: nn.Module) -> Iterator[None]:
    """Run a forward through ``module`` without recording gradients for its parameters.

    Gradients still flow through it to its input; ``requires_grad`` flags are restored after.
    """
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class _GANTraining(nn.Module):
    """The shared G-then-D training step of both stages; subclasses provide ``_generator``."""

    discriminator: PixelDiscriminator
    discriminator_lr_scale: float
    uses_flow = True  # batches are FlowClips (vadbench.training.flow_input); the appearance stream ignores the flow

    def _generator(self, clips: FlowClips) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(generator loss, its terms, prediction seen by D, its real target)``."""
        raise NotImplementedError

    def _generator_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def _adversarial(self, prediction: torch.Tensor) -> torch.Tensor:
        with _no_grad_for(self.discriminator):  # the generator's adversarial term never trains D
            return lsgan_generator_loss(self.discriminator(prediction))

    def parameter_groups(self) -> dict[str, dict]:
        """One optimiser per group, with lr = preset lr * ``lr_scale``."""
        return {
            "generator": {"params": self._generator_parameters(), "lr_scale": 1.0},
            "discriminator": {"params": list(self.discriminator.parameters()), "lr_scale": self.discriminator_lr_scale},
        }

    def training_loss(self, clips: FlowClips) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator objective, no optimiser step (in eval mode the codebooks do not move).
        The terms are detached 0-d tensors, read by the loop once per epoch (no wait per batch)."""
        loss, terms, _, _ = self._generator(clips)
        return loss, {"loss": loss.detach(), **{name: value.detach() for name, value in terms.items()}}

    def training_step(
        self, clips: FlowClips, optimizers: Mapping[str, torch.optim.Optimizer], autocast: Callable[[], ContextManager]
    ) -> dict[str, torch.Tensor]:
        """One generator update, then one discriminator update on the same detached prediction.

        Args:
            clips: the batch.
            optimizers: ``{"generator": ..., "discriminator": ...}`` over :meth:`parameter_groups`.
            autocast: returns the context the forward passes run under.

        Returns:
            Detached 0-d tensors, left on the device (the loop sums them there and reads the
            sums once per epoch): ``loss`` (generator total), each generator term, ``discriminator``.
        """
        with autocast():
            loss, terms, prediction, target = self._generator(clips)
        optimizers["generator"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["generator"].step()
        fake = prediction.detach()  # the D step never reaches G
        with autocast():
            d_loss = lsgan_discriminator_loss(self.discriminator(target), self.discriminator(fake))
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()
        out = {"loss": loss.detach(), **{name: value.detach() for name, value in terms.items()}}
        out["discriminator"] = d_loss.detach()
        return out


# ----------------------------------------------------------------------------- stage 1


class AMMCStream(_GANTraining):
    """Stage 1: one stream (appearance or motion) with its own discriminator.

    Args:
        in_channels: channels of one frame (1 gray, 3 RGB).
        t_length: frames per clip (paper 5): appearance predicts frame T-1 from frames 0..T-2,
            motion predicts flow T-2 (the last) from flows 0..T-3.
        widths: U-Net widths (paper 64, 128, 256, 512).
        stream: ``"appearance"`` or ``"motion"``.
        n_embed, embed_dim, k: the memory (paper 256, 64, 2).
        discriminator_widths: :class:`PixelDiscriminator` filters (paper 128, 256, 512, 512).
        intensity_weight, gradient_weight, adversarial_weight, commit_weight: loss weights.
            Appearance: intensity + gradient + adversarial + commit (official
            ``rgb_int_gdl_flow_adv_vq`` without its gradient-free FlowNet2 term); motion:
            intensity + adversarial + commit (``op_int_adv_vq``; ``gradient_weight`` unused).
        discriminator_lr_scale: the discriminator's lr relative to the generator's.
    """

    def __init__(
        self,
        in_channels: int = 1,
        t_length: int = 5,
        widths: Sequence[int] = PAPER_WIDTHS,
        stream: str = "appearance",
        n_embed: int = 256,
        embed_dim: int = 64,
        k: int = 2,
        discriminator_widths: Sequence[int] = PAPER_DISCRIMINATOR_WIDTHS,
        intensity_weight: float = 1.0,
        gradient_weight: float = 1.0,
        adversarial_weight: float = 0.05,
        commit_weight: float = 0.25,
        discriminator_lr_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if stream not in STREAMS:
            raise ValueError(f"AMMC stream must be one of {STREAMS}, got {stream!r}")
        if t_length < 3:
            raise ValueError(f"AMMC-Net needs clips of at least 3 frames (2 flows), got t_length={t_length}")
        self.in_channels, self.t_length, self.stream = in_channels, t_length, stream
        if stream == "appearance":
            cin, cout = in_channels * (t_length - 1), in_channels
        else:
            cin, cout = 2 * (t_length - 2), 2
        self.unet = UNetVQ(cin, cout, widths, n_embed, embed_dim, k)
        self.discriminator = PixelDiscriminator(cout, discriminator_widths)
        self.intensity_weight, self.gradient_weight = intensity_weight, gradient_weight
        self.adversarial_weight, self.commit_weight = adversarial_weight, commit_weight
        self.discriminator_lr_scale = discriminator_lr_scale

    def split(self, clips: FlowClips) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input (B, C*(T-1) or 2*(T-2), H, W), target (B, C or 2, H, W))`` of this stream."""
        _check_clips(clips, self.in_channels, self.t_length)
        if self.stream == "appearance":
            return _stack(clips.frames[:, :, :-1]), clips.frames[:, :, -1]
        return _stack(clips.flows[:, :, :-1]), clips.flows[:, :, -1]

    def forward(self, clips: FlowClips) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(prediction, target, commit (B,))``; in training mode the codebook is updated."""
        inputs, target = self.split(clips)
        prediction, commit = self.unet(inputs)
        return prediction, target, commit

    def _generator(self, clips: FlowClips) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        prediction, target, commit = self(clips)
        terms = {"intensity": intensity_loss(prediction, target)}
        loss = self.intensity_weight * terms["intensity"]
        if self.stream == "appearance":
            terms["gradient"] = gradient_loss(prediction, target)
            loss = loss + self.gradient_weight * terms["gradient"]
        terms["adversarial"] = self._adversarial(prediction)
        terms["commit"] = commit.mean()
        loss = loss + self.adversarial_weight * terms["adversarial"] + self.commit_weight * terms["commit"]
        return loss, terms, prediction, target

    def _generator_parameters(self) -> list[nn.Parameter]:
        return list(self.unet.parameters())

    @torch.no_grad()
    def test_terms(self, clips: FlowClips) -> dict[str, torch.Tensor]:
        """``{"psnr": (B,), "commit": (B,)}`` of the appearance stream (call in eval mode).

        Raises:
            ValueError: for the motion stream, which the score does not use.
        """
        if self.stream != "appearance":
            raise ValueError("the AMMC score uses the appearance stream only; a motion stream has no test terms")
        prediction, target, commit = self(clips)
        return {"psnr": psnr(prediction, target), "commit": commit.float()}

    @torch.no_grad()
    def error_map(self, clips: FlowClips, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(error (B, H, W), prediction (B, C, H, W))`` of the appearance stream's predicted frame
        (:func:`squared_error_map`); the motion stream has no map (the score does not use it)."""
        if self.stream != "appearance":
            raise ValueError("the AMMC score uses the appearance stream only; a motion stream has no error map")
        _check_last(offset, self.t_length)
        prediction, target, _ = self(clips)
        return squared_error_map(prediction, target), prediction


# ----------------------------------------------------------------------------- stage 2


class AMMCNet(_GANTraining):
    """Stage 2: both streams joined by the AMFT bridge, with the appearance discriminator.

    Args:
        in_channels, t_length, widths, n_embed, embed_dim, k, discriminator_widths: as
            :class:`AMMCStream` (both streams share them).
        intensity_weight, gradient_weight, adversarial_weight, commit_weight: appearance terms,
            the commit weight applies to commit_a + commit_m.
        flow_weight: weight of the motion stream's intensity loss (official ``lam_lp_op``; not
            the FlowNet2 loss, which is left out as it carries no gradient).
        discriminator_lr_scale: the discriminator's lr relative to the generator's.
        freeze_streams: the official ``--use_fixed_params``: both U-Nets are fixed (no gradient,
            out of the generator group, BN in eval mode, codebooks not updated); the bridge and
            the discriminator train.

    Loss: intensity(rgb) + gradient(rgb) + adversarial(rgb) + commit_weight * (commit_a +
    commit_m) + flow_weight * intensity(flow), each with its weight.
    """

    def __init__(
        self,
        in_channels: int = 1,
        t_length: int = 5,
        widths: Sequence[int] = PAPER_WIDTHS,
        n_embed: int = 256,
        embed_dim: int = 64,
        k: int = 2,
        discriminator_widths: Sequence[int] = PAPER_DISCRIMINATOR_WIDTHS,
        intensity_weight: float = 1.0,
        gradient_weight: float = 1.0,
        adversarial_weight: float = 0.05,
        commit_weight: float = 0.25,
        flow_weight: float = 1.0,
        discriminator_lr_scale: float = 0.1,
        freeze_streams: bool = False,
    ) -> None:
        super().__init__()
        if t_length < 3:
            raise ValueError(f"AMMC-Net needs clips of at least 3 frames (2 flows), got t_length={t_length}")
        self.in_channels, self.t_length = in_channels, t_length
        self.appearance = UNetVQ(in_channels * (t_length - 1), in_channels, widths, n_embed, embed_dim, k)
        self.motion = UNetVQ(2 * (t_length - 2), 2, widths, n_embed, embed_dim, k)
        self.bridge = Bridge(widths[3])
        self.discriminator = PixelDiscriminator(in_channels, discriminator_widths)
        self.intensity_weight, self.gradient_weight = intensity_weight, gradient_weight
        self.adversarial_weight, self.commit_weight = adversarial_weight, commit_weight
        self.flow_weight, self.discriminator_lr_scale = flow_weight, discriminator_lr_scale
        self.freeze_streams = freeze_streams
        if freeze_streams:
            for p in [*self.appearance.parameters(), *self.motion.parameters()]:
                p.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> "AMMCNet":
        """As :meth:`nn.Module.train`, but frozen streams stay in eval mode (BN stats, codebooks)."""
        super().train(mode)
        if self.freeze_streams:
            self.appearance.eval()
            self.motion.eval()
        return self

    def load_streams(
        self,
        appearance_state: Mapping[str, torch.Tensor],
        motion_state: Mapping[str, torch.Tensor],
        discriminator: bool = True,
    ) -> None:
        """Copy two trained :class:`AMMCStream` state_dicts into the streams (stage 1 -> 2).

        Args:
            appearance_state: state_dict of an ``AMMCStream(stream="appearance")``.
            motion_state: state_dict of an ``AMMCStream(stream="motion")``.
            discriminator: also copy the appearance stream's discriminator (the official code
                starts stage 2 with a fresh one).

        Raises:
            ValueError: a key is missing, unexpected or of another shape (streams trained with
                other widths, channels, clip length or memory size).
        """
        targets: list[tuple[str, nn.Module, Mapping[str, torch.Tensor], str]] = [
            ("appearance", self.appearance, appearance_state, "unet."),
            ("motion", self.motion, motion_state, "unet."),
        ]
        if discriminator:
            targets.append(("appearance discriminator", self.discriminator, appearance_state, "discriminator."))
        loaded = []
        for name, module, state, prefix in targets:
            sub = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            own = module.state_dict()
            problems = [f"missing {key}" for key in own if key not in sub]
            problems += [f"unexpected {key}" for key in sub if key not in own]
            problems += [
                f"{key}: stream has {tuple(sub[key].shape)}, joint model needs {tuple(value.shape)}"
                for key, value in own.items()
                if key in sub and sub[key].shape != value.shape
            ]
            if problems:
                shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
                raise ValueError(
                    f"the {name} stream's state_dict does not fit AMMCNet ({len(problems)} problems: {shown}). "
                    "Train both stage-1 streams with the same in_channels, t_length, widths, n_embed, embed_dim, "
                    "k and discriminator_widths as the joint model, and pass the appearance stream first"
                )
            loaded.append((module, sub))
        with torch.no_grad():
            for module, sub in loaded:
                for key, value in module.state_dict().items():
                    value.copy_(sub[key])

    def split(self, clips: FlowClips) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rgb input (B, C*(T-1), H, W), rgb target (B, C, H, W), flow input (B, 2*(T-2), H, W),
        flow target (B, 2, H, W))``."""
        _check_clips(clips, self.in_channels, self.t_length)
        frames, flows = clips.frames, clips.flows
        return _stack(frames[:, :, :-1]), frames[:, :, -1], _stack(flows[:, :, :-1]), flows[:, :, -1]

    def forward(
        self, clips: FlowClips
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rgb prediction, rgb target, flow prediction, flow target, commit_a (B,), commit_m (B,))``."""
        rgb_in, rgb_target, flow_in, flow_target = self.split(clips)
        z_a, skips_a, commit_a = self.appearance.encode(rgb_in)
        z_m, skips_m, commit_m = self.motion.encode(flow_in)
        z_a, z_m = self.bridge(z_a, z_m)
        rgb = self.appearance.decode(z_a, skips_a)
        flow = self.motion.decode(z_m, skips_m)
        return rgb, rgb_target, flow, flow_target, commit_a, commit_m

    def _generator(self, clips: FlowClips) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        rgb, rgb_target, flow, flow_target, commit_a, commit_m = self(clips)
        terms = {
            "intensity": intensity_loss(rgb, rgb_target),
            "gradient": gradient_loss(rgb, rgb_target),
            "adversarial": self._adversarial(rgb),
            "commit_appearance": commit_a.mean(),
            "commit_motion": commit_m.mean(),
            "flow_intensity": intensity_loss(flow, flow_target),
        }
        loss = (
            self.intensity_weight * terms["intensity"]
            + self.gradient_weight * terms["gradient"]
            + self.adversarial_weight * terms["adversarial"]
            + self.commit_weight * (terms["commit_appearance"] + terms["commit_motion"])
            + self.flow_weight * terms["flow_intensity"]
        )
        return loss, terms, rgb, rgb_target

    def _generator_parameters(self) -> list[nn.Parameter]:
        if self.freeze_streams:
            return list(self.bridge.parameters())
        return [*self.appearance.parameters(), *self.motion.parameters(), *self.bridge.parameters()]

    @torch.no_grad()
    def test_terms(self, clips: FlowClips) -> dict[str, torch.Tensor]:
        """``{"psnr": (B,), "commit": (B,)}``: appearance PSNR and commit per clip (call in eval mode)."""
        rgb, rgb_target, _, _, commit_a, _ = self(clips)
        return {"psnr": psnr(rgb, rgb_target), "commit": commit_a.float()}

    @torch.no_grad()
    def error_map(self, clips: FlowClips, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(error (B, H, W), rgb prediction (B, C, H, W))`` of the predicted frame (:func:`squared_error_map`)."""
        _check_last(offset, self.t_length)
        rgb, rgb_target, *_ = self(clips)
        return squared_error_map(rgb, rgb_target), rgb


__all__ = [
    "AMMCNet",
    "AMMCStream",
    "Bridge",
    "PixelDiscriminator",
    "UNetVQ",
    "VQMemory",
    "double_conv",
    "gradient_loss",
    "image_gradients",
    "intensity_loss",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "psnr",
    "squared_error_map",
]
