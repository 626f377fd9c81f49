"""MemAE and its plain 3D-convolutional autoencoder baseline.

Gong et al., "Memorizing Normality to Detect Anomaly: Memory-augmented Deep Autoencoder for
Unsupervised Anomaly Detection", ICCV 2019 (arXiv 1904.02639); official code
donggong1/memae-anomaly-detection, models/memae_3dconv.py and ae_3dconv.py.

Input clips are (B, C, T, H, W) in [-1, 1] with T divisible by 8 and H, W divisible by 16
(the encoder strides are (1,2,2), then (2,2,2) three times). Every conv is 3x3x3, padding 1,
followed by BatchNorm3d and LeakyReLU(0.2), except the last decoder layer, which is linear:
the output is unbounded while targets lie in [-1, 1], as in the official code.

Losses and errors follow the official code rather than the paper text where they differ:

* training loss = mean squared error over every element + ``entropy_weight`` * mean entropy
  of the (shrunk) addressing weights;
* the per-clip test error (``clip_errors``) is, by default (``memae_l2``, the official MemAE
  branch of script_testing.py), the mean over (T, H, W) of sqrt(sum over channels of r^2),
  r = x_hat - x in [-1, 1] space (with one channel: the mean absolute error). The official AE
  branch is scored with ``official_mse`` instead: mean over (C, T, H, W) of r^2 after both
  clips are un-normalised to [0, 1], i.e. mean(((x_hat - x) / 2) ** 2), with no clipping of the
  unbounded output. The protocol's ``error`` picks one (``ae`` and ``memae`` use ``memae_l2``,
  so the two are compared on equal terms; ``ae_mse`` is the AE as its official script scores it).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vadbench.models.memory import Addressing, MemoryModule, addressing_entropy, live_fraction
from vadbench.protocol import ERROR_MEASURES

PAPER_WIDTHS = (96, 128, 256, 256)


def _down(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1),
        nn.BatchNorm3d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _up(cin: int, cout: int, stride: tuple[int, int, int], out_pad: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose3d(cin, cout, 3, stride=stride, padding=1, output_padding=out_pad),
        nn.BatchNorm3d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


def init_weights(module: nn.Module) -> None:
    """Official ``weights_init``: conv weights ~ N(0, 0.02); BN weight ~ N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm3d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class MemAE(nn.Module):
    """3D-conv autoencoder with an optional memory between encoder and decoder.

    Args:
        in_channels: frame channels (1 for grayscale, as in the paper).
        widths: four encoder widths; the paper uses (96, 128, 256, 256).
        memory_size: N memory items; ``None`` or 0 builds the plain AE baseline.
        shrink_threshold: lambda of hard shrinkage (0.0025 in the official code).
        entropy_weight: alpha of the entropy loss (0.0002 in the official code).
        addressing: ``"dot"`` (official code) or ``"cosine"`` (paper text).
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = PAPER_WIDTHS,
        memory_size: int | None = 2000,
        shrink_threshold: float = 0.0025,
        entropy_weight: float = 0.0002,
        addressing: Addressing = "dot",
    ) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must hold four encoder widths, got {list(widths)}")
        w0, w1, w2, w3 = widths
        self.encoder = nn.Sequential(
            _down(in_channels, w0, (1, 2, 2)),
            _down(w0, w1, (2, 2, 2)),
            _down(w1, w2, (2, 2, 2)),
            _down(w2, w3, (2, 2, 2)),
        )
        self.memory = MemoryModule(memory_size, w3, shrink_threshold, addressing) if memory_size else None
        self.decoder = nn.Sequential(
            _up(w3, w2, (2, 2, 2), (1, 1, 1)),
            _up(w2, w1, (2, 2, 2), (1, 1, 1)),
            _up(w1, w0, (2, 2, 2), (1, 1, 1)),
            nn.ConvTranspose3d(w0, in_channels, 3, stride=(1, 2, 2), padding=1, output_padding=(0, 1, 1)),
        )
        self.entropy_weight = entropy_weight
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reconstruct clips.

        Args:
            x: (B, C, T, H, W) in [-1, 1].

        Returns:
            ``(x_hat, weights)``: x_hat (B, C, T, H, W); weights (B*T/8*H/16*W/16, N) addressing
            weights, or ``None`` for the plain AE.
        """
        z = self.encoder(x)
        weights = None
        if self.memory is not None:
            z, weights = self.memory(z)
        return self.decoder(z), weights

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Official training objective; returns the loss and its parts for logging, as detached
        0-dim tensors: the training loop sums them on the device and reads them once per epoch
        (a ``.item()`` here would make every step wait for the device)."""
        x_hat, weights = self(x)
        recon = F.mse_loss(x_hat, x)
        parts = {"recon": recon.detach()}
        loss = recon
        if weights is not None:
            entropy = addressing_entropy(weights)
            parts["entropy"] = entropy.detach()
            parts["live_queries"] = live_fraction(weights)
            loss = recon + self.entropy_weight * entropy
        parts["loss"] = loss.detach()
        return loss, parts

    @torch.no_grad()
    def clip_errors(self, x: torch.Tensor, measure: str = "memae_l2") -> torch.Tensor:
        """Anomaly error of each clip under ``measure`` (the protocol's ``error``).

        Args:
            x: (B, C, T, H, W) in [-1, 1].
            measure: ``memae_l2``: mean over (T, H, W) of the channel-wise L2 residual in
                [-1, 1] (official MemAE branch); ``official_mse``: mean over (C, T, H, W) of the
                squared residual in [0, 1] space, ((x_hat - x) / 2) ** 2 (official AE branch).

        Returns:
            (B,) errors, in x's dtype.

        Raises:
            ValueError: an unknown ``measure``.
        """
        if measure not in ERROR_MEASURES:
            raise ValueError(f"unknown clip error {measure!r}; known: {', '.join(ERROR_MEASURES)}")
        x_hat, _ = self(x)
        if measure == "official_mse":
            return (((x_hat - x) / 2) ** 2).flatten(1).mean(dim=1)
        return torch.sqrt(((x_hat - x) ** 2).sum(dim=1)).flatten(1).mean(dim=1)

    @torch.no_grad()
    def error_map(self, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel error of the frame a clip scores (index ``offset``; the centre for MemAE).

        Returns:
            ``(error (B, H, W), output (B, C, H, W))``: the channel-wise L2 residual of that
            frame (the very quantity :meth:`clip_errors` averages, in [-1, 1] space) and its
            reconstruction.
        """
        x_hat, _ = self(x)
        frame = x_hat[:, :, offset]
        return torch.sqrt(((frame - x[:, :, offset]) ** 2).sum(dim=1)), frame
