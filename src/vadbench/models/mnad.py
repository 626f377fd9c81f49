"""MNAD: memory-guided normality, reconstruction and prediction variants.

Park, Noh and Ham, "Learning Memory-guided Normality for Anomaly Detection", CVPR 2020; official
code cvlab-yonsei/MNAD (model/final_future_prediction_with_memory_spatial_sumonly_weight_ranking_top1.py,
model/Reconstruction.py, model/memory_final_spatial_sumonly_weight_ranking_top1.py, Train.py,
Evaluate.py). Details and pitfalls: ../shared/docs/methods.md section 2.

Input clips are (B, C, T, H, W) in [-1, 1] with H, W divisible by 8. Prediction (``t_length``
5): frames 0..T-2 are stacked along channels, ((T-1)*C channels), and frame T-1 is the target;
reconstruction (``t_length`` 1): the frame is input and target. The network is 2D:

* encoder: Block(in->w0), pool, Block(w0->w1), pool, Block(w1->w2), pool, then
  Conv(w2->w3)-BN-ReLU-Conv(w3->w3) with no final BN/ReLU (as the official code): queries
  (B, w3, H/8, W/8); Block = (Conv3x3-BN-ReLU) x 2;
* memory: ``memory_size`` unit-norm items of dimension w3, a buffer and NOT a parameter. Read:
  softmax over items of q.p (weights detached), decoder input [q; p_hat] (2*w3 channels). Update
  (training, and at test time when a frame's weighted error is below ``update_threshold``):
  p_m <- L2norm(p_m + sum over queries whose top-1 item is m of (v_km / max_k v_km) q_k),
  v = softmax over queries (the whole batch, which is why the batch size matters);
* decoder with skip connections (prediction) or without (reconstruction), ending in tanh.

Losses: MSE + compactness_weight * mean (q - p_top1)^2 + separateness_weight * triplet(q,
p_top1, p_top2, margin 1). The memory is saved in the state_dict (a buffer), never pickled with
the module.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PAPER_WIDTHS = (64, 128, 256, 512)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _generator(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, mid, 3, padding=1),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, mid, 3, padding=1),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, cout, 3, padding=1),
        nn.Tanh(),
    )


class Encoder(nn.Module):
    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.block1, self.block2, self.block3 = _block(in_channels, w0), _block(w0, w1), _block(w1, w2)
        self.block4 = nn.Sequential(
            nn.Conv2d(w2, w3, 3, padding=1), nn.BatchNorm2d(w3), nn.ReLU(inplace=True), nn.Conv2d(w3, w3, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        s1 = self.block1(x)
        s2 = self.block2(F.max_pool2d(s1, 2))
        s3 = self.block3(F.max_pool2d(s2, 2))
        return self.block4(F.max_pool2d(s3, 2)), [s1, s2, s3]


class Decoder(nn.Module):
    def __init__(self, out_channels: int, widths: Sequence[int], skips: bool) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.skips = skips
        self.block4 = _block(2 * w3, w3)
        if skips:
            self.up3, self.block3 = _up(w3, w2), _block(2 * w2, w2)
            self.up2, self.block2 = _up(w2, w1), _block(2 * w1, w1)
            self.up1 = _up(w1, w0)
            self.generator = _generator(2 * w0, w0, out_channels)
        else:
            self.up3, self.block3 = _up(w3, w3), _block(w3, w2)
            self.up2, self.block2 = _up(w2, w2), _block(w2, w1)
            self.up1 = _up(w1, w1)
            self.generator = _generator(w1, w0, out_channels)

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        h = self.block4(z)
        if self.skips:
            s1, s2, s3 = skips
            h = self.block3(torch.cat([s3, self.up3(h)], 1))
            h = self.block2(torch.cat([s2, self.up2(h)], 1))
            return self.generator(torch.cat([s1, self.up1(h)], 1))
        h = self.block2(self.up2(self.block3(self.up3(h))))
        return self.generator(self.up1(h))


def read_memory(queries: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(read items p_hat (K, D), read weights w (K, M))`` for unit-norm queries (K, D)."""
    weights = torch.softmax(queries @ memory.t(), dim=1).detach()
    return weights @ memory, weights


def update_memory(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The official top-1 update: each item moves toward the queries that chose it.

    Args:
        queries: (K, D) unit-norm queries (all queries of the batch).
        memory: (M, D) unit-norm items.

    Returns:
        The new (M, D) memory, detached; an item no query chose is returned unchanged.
    """
    queries, memory = queries.detach(), memory.detach()
    scores = queries @ memory.t()  # (K, M)
    top1 = scores.argmax(dim=1)
    v = torch.softmax(scores, dim=0)  # over queries, per item
    scale = v / v.max(dim=0, keepdim=True).values  # max over ALL queries, as the official code
    assigned = F.one_hot(top1, memory.shape[0]).to(scale.dtype)  # (K, M)
    delta = (assigned * scale).t() @ queries  # (M, D)
    chosen = assigned.sum(dim=0) > 0
    updated = F.normalize(memory + delta, dim=1)
    return torch.where(chosen[:, None], updated, memory)


def memory_losses(queries: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(compactness, separateness)`` of (K, D) queries against a detached (M, D) memory."""
    memory = memory.detach()
    top2 = (queries @ memory.t()).topk(2, dim=1).indices
    positive, negative = memory[top2[:, 0]], memory[top2[:, 1]]
    compactness = F.mse_loss(queries, positive)
    separateness = F.triplet_margin_loss(queries, positive, negative, margin=1.0)
    return compactness, separateness


class MNAD(nn.Module):
    """MNAD network with its non-learned memory (a buffer).

    Args:
        in_channels: channels of one frame (1 gray, 3 RGB).
        t_length: frames per clip: 1 reconstructs a frame, >1 predicts the last from the others.
        widths: encoder widths (paper: 64, 128, 256, 512); the last is the memory dimension.
        memory_size: number of items (paper: 10).
        compactness_weight, separateness_weight: loss weights (paper: 0.1 prediction, 0.01 reconstruction).

    The initial items are U[0,1) rows, L2-normalised (as the official code), drawn from torch's
    global generator, which training seeds with the run's seed.
    """

    def __init__(
        self,
        in_channels: int = 3,
        t_length: int = 5,
        widths: Sequence[int] = PAPER_WIDTHS,
        memory_size: int = 10,
        compactness_weight: float = 0.1,
        separateness_weight: float = 0.1,
    ) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"MNAD needs 4 widths, got {list(widths)}")
        self.t_length, self.channels = t_length, in_channels
        self.predict = t_length > 1
        inputs = in_channels * (t_length - 1) if self.predict else in_channels
        self.encoder = Encoder(inputs, widths)
        self.decoder = Decoder(in_channels, widths, skips=self.predict)
        self.compactness_weight, self.separateness_weight = compactness_weight, separateness_weight
        self.register_buffer("memory", F.normalize(torch.rand(memory_size, widths[3]), dim=1))

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T, H, W) clip -> ((B, C*(T-1) or C, H, W) input, (B, C, H, W) target)."""
        if x.shape[2] != self.t_length:
            raise ValueError(f"MNAD built for {self.t_length}-frame clips got {x.shape[2]} frames")
        target = x[:, :, -1]
        if not self.predict:
            return target, target
        inputs = x[:, :, :-1].transpose(1, 2).flatten(1, 2)  # frame-major channels, as concatenated frames
        return inputs, target

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """``(feature map (B, D, h, w), skips, unit-norm queries (B*h*w, D))``."""
        features, skips = self.encoder(inputs)
        queries = F.normalize(features, dim=1).permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        return features, skips, queries

    def decode(
        self, features: torch.Tensor, skips: list[torch.Tensor], queries: torch.Tensor, memory: torch.Tensor
    ) -> torch.Tensor:
        read, _ = read_memory(queries, memory)
        b, d, h, w = features.shape
        normalised = queries.reshape(b, h, w, d).permute(0, 3, 1, 2)
        read = read.reshape(b, h, w, d).permute(0, 3, 1, 2)
        return self.decoder(torch.cat([normalised, read], dim=1), skips)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(prediction (B, C, H, W), target (B, C, H, W), queries (B*h*w, D))``; no update."""
        inputs, target = self.split(x)
        features, skips, queries = self.encode(inputs)
        return self.decode(features, skips, queries, self.memory), target, queries

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Official objective on the current memory; in training mode the memory is then updated.
        The parts are detached 0-dim tensors, summed by the training loop on the device."""
        output, target, queries = self(x)
        recon = F.mse_loss(output, target)
        compactness, separateness = memory_losses(queries, self.memory)
        loss = recon + self.compactness_weight * compactness + self.separateness_weight * separateness
        if self.training:
            with torch.no_grad():
                self.memory.copy_(update_memory(queries, self.memory))
        return loss, {
            "loss": loss.detach(),
            "recon": recon.detach(),
            "compactness": compactness.detach(),
            "separateness": separateness.detach(),
        }

    @torch.no_grad()
    def test_frame(
        self, x: torch.Tensor, memory: torch.Tensor, update_threshold: float
    ) -> tuple[float, float, float, torch.Tensor, torch.Tensor]:
        """Score one clip (B = 1) as Evaluate.py does, with a test-time memory.

        Returns:
            ``(psnr, compactness distance, weighted error, new memory, top-1 item of each query)``;
            the memory is updated with this frame's queries only when the weighted error is
            below ``update_threshold``.
        """
        output, target, queries = self.decode_with(x, memory)
        error = ((output + 1) / 2 - (target + 1) / 2) ** 2  # per-pixel squared error in [0, 1] space
        mse = error.mean().item()
        psnr = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()
        rho = 1 - torch.exp(-error)
        weighted = ((rho * error).sum() / rho.sum()).item()
        top1 = (queries @ memory.t()).argmax(dim=1)
        distance = F.mse_loss(queries, memory[top1]).item()
        if weighted < update_threshold:
            memory = update_memory(queries, memory)
        return psnr, distance, weighted, memory, top1

    @torch.no_grad()
    def error_map(self, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel error of the predicted (or reconstructed) frame, the last of the clip.

        The squared error in [0, 1] space, mean over channels: the map whose mean is the MSE
        behind the PSNR of :meth:`test_frame`. It is computed with the trained memory: the
        test-time memory updates of the score are not replayed, so a map does not depend on the
        order the videos are processed in.

        Returns:
            ``(error (B, H, W), output (B, C, H, W))``.
        """
        if offset != x.shape[2] - 1:
            raise ValueError(f"MNAD scores the last frame of a clip (index {x.shape[2] - 1}), not index {offset}")
        output, target, _ = self(x)
        return (((output - target) / 2) ** 2).mean(dim=1), output

    def decode_with(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, target = self.split(x)
        features, skips, queries = self.encode(inputs)
        return self.decode(features, skips, queries, memory), target, queries
