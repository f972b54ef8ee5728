"""A small, fast CIFAR-10 network for training on a laptop CPU (section 14.15).

:class:`FastCIFARNet` borrows the ideas of the fastest published CIFAR-10 training scripts
(Page's ResNet-9 experiments, Keller Jordan's airbench) at a size a CPU can train in minutes:

* a 2x2 stem whose filters are set, not learned, to *whiten* the input patches (the
  eigenvectors of the patch covariance scaled by ``1 / sqrt(eigenvalue)``, and their negatives),
  so the first layer hands decorrelated, unit-variance features to the rest from step one;
* three blocks ``conv 3x3 -> max-pool 2x2 -> BN -> GELU -> conv 3x3 -> BN -> GELU`` that halve
  the resolution and widen the channels;
* global max pooling and a bias-free linear classifier with its logits scaled down
  (a fixed temperature, which trains better than raw logits with these large BN activations);
* optionally (``flip_tta=True``), test-time augmentation: in eval mode the logits are the mean
  over the image and its mirror image, which costs one more forward pass at test time only.

It is a different, stronger model than the chapter's :class:`~cnnbook.models.SimpleCNN`:
batch normalisation and the whitened stem let it use a high learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
    )


class FastCIFARNet(nn.Module):
    """Whitened 2x2 stem, three conv-pool-BN blocks, max-pool head.

    Shapes for a 32x32 input with ``widths=(64, 128, 256)``: ``(N, 3, 32, 32) -> stem
    (N, 24, 31, 31) -> (N, 64, 15, 15) -> (N, 128, 7, 7) -> (N, 256, 3, 3) -> (N, 256) ->
    (N, num_classes)``.

    Args:
        num_classes: Number of output classes.
        widths: Channels of the three blocks.
        in_channels: Input channels (3 for RGB).
        logit_scale: Fixed factor applied to the logits.
        flip_tta: In eval mode, average the logits of each image and its horizontal mirror.
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = (64, 128, 256),
        in_channels: int = 3,
        logit_scale: float = 1 / 9,
        flip_tta: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != 3 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be three positive channel counts; got {widths!r}.")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive; got {num_classes}.")
        self.in_channels = in_channels
        stem_out = 2 * in_channels * 4  # +/- each of the 2x2xC whitening directions
        self.stem = nn.Conv2d(in_channels, stem_out, kernel_size=2, bias=True)
        self.stem_act = nn.GELU()
        chans = [stem_out, *[int(w) for w in widths]]
        self.blocks = nn.Sequential(*[_conv_block(a, b) for a, b in zip(chans, chans[1:], strict=False)])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(chans[-1], num_classes, bias=False)
        self.logit_scale = logit_scale
        self.flip_tta = flip_tta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: Normalised images ``(N, in_channels, H, W)`` with ``H, W >= 16``.

        Returns:
            Logits ``(N, num_classes)``.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"FastCIFARNet expects (N, {self.in_channels}, H, W); got {tuple(x.shape)}.")
        if self.flip_tta and not self.training:
            return (self._logits(x) + self._logits(x.flip(3))) / 2
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem_act(self.stem(x)))
        return self.head(torch.flatten(self.pool(x), 1)) * self.logit_scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4, freeze: bool = True) -> torch.Tensor:
        """Set the stem to whiten 2x2 patches of ``images`` (and, by default, freeze it).

        With patch covariance ``Sigma = V diag(lambda) V^T``, the filters are the rows of
        ``diag(lambda + eps)^(-1/2) V^T`` and their negatives; the bias centres the patches.

        Args:
            images: Normalised training images ``(N, C, H, W)`` (a few thousand suffice).
            eps: Added to the eigenvalues (limits the gain of near-constant directions).
            freeze: Stop the optimiser from changing the stem.

        Returns:
            The eigenvalues ``(C * 4,)`` in descending order.
        """
        w = self.stem.weight
        patches = images.to(w.device, torch.float32).unfold(2, 2, 1).unfold(3, 2, 1)
        # (N, C, H-1, W-1, 2, 2) -> (num_patches, C*2*2), ordered like the conv weight
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, w.shape[1] * 4)
        mean = flat.mean(0)
        cov = torch.cov(flat.T)
        eigval, eigvec = torch.linalg.eigh(cov)
        eigval, eigvec = eigval.flip(0), eigvec.flip(1)
        filters = (eigvec / (eigval + eps).sqrt()).T.reshape(-1, w.shape[1], 2, 2)
        self.stem.weight.copy_(torch.cat([filters, -filters]))
        assert self.stem.bias is not None  # built with bias=True
        self.stem.bias.copy_(-(self.stem.weight.flatten(1) @ mean))
        self.stem.requires_grad_(not freeze)
        return eigval
