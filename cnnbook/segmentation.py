"""Semantic segmentation: a small U-Net, an ASPP block and the IoU metric (section 14.13).

The U-Net follows the encoder/decoder template: the encoder halves the resolution at each
level while widening the channels; the decoder doubles it back with transposed convolutions
and concatenates the encoder's feature map of the same size (the skip connection) before
convolving. ASPP (atrous spatial pyramid pooling, from DeepLab) runs parallel dilated
convolutions with different rates plus a global-average branch and fuses them with a 1x1
convolution, so one layer sees context at several scales without losing resolution.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

from cnnbook.metrics import confusion_matrix
from cnnbook.models.layers import ConvBNAct


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> ConvBNAct:
    """Convolution (size-preserving padding, no bias) -> BatchNorm -> ReLU.

    The package's one conv-BN-activation block, :class:`cnnbook.models.layers.ConvBNAct`, with
    an in-place ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd kernel size.
        dilation: Dilation rate; padding ``dilation * (kernel_size - 1) // 2`` keeps H and W.

    Returns:
        The three layers (children ``conv``, ``bn``, ``act``) mapping ``(N, C_in, H, W)`` to
        ``(N, C_out, H, W)``.
    """
    return ConvBNAct(
        in_channels,
        out_channels,
        kernel_size,
        dilation=dilation,
        activation=functools.partial(nn.ReLU, inplace=True),
    )


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers, the unit of every U-Net level.

    Args:
        in_channels: Input channels.
        out_channels: Output channels of both convolutions.

    Returns:
        ``nn.Sequential`` mapping ``(N, C_in, H, W)`` to ``(N, C_out, H, W)``.
    """
    return nn.Sequential(conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels))


class UNet(nn.Module):
    """A small U-Net for per-pixel classification.

    With ``widths=(16, 32, 64)`` the encoder works at full, 1/2 and 1/4 resolution (the last
    width is the bottleneck); each decoder step is a stride-2 ``ConvTranspose2d`` (kernel 2),
    which exactly doubles H and W, then a double convolution on the concatenation with the
    matching encoder output.

    Args:
        in_channels: Image channels.
        num_classes: Number of classes, background included; the output has one logit map each.
        widths: Channels per level from full resolution down to the bottleneck (>= 2 levels).
        skip_connections: ``False`` drops the concatenations (an ablation: the decoder must then
            recover fine detail from the bottleneck alone).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 4,
        widths: Sequence[int] = (16, 32, 64),
        skip_connections: bool = True,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError(f"widths={widths}: give at least two levels, e.g. (16, 32).")
        self.widths = widths
        self.skip_connections = skip_connections
        self.encoder = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.encoder.append(double_conv(prev, w))
            prev = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for w_deep, w in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.up.append(nn.ConvTranspose2d(w_deep, w, kernel_size=2, stride=2))
            self.decoder.append(double_conv(2 * w if skip_connections else w, w))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    @property
    def downsampling(self) -> int:
        """Total downsampling factor at the bottleneck; H and W must be multiples of it."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits.

        Args:
            x: Images, shape ``(N, C_in, H, W)`` with H and W multiples of :attr:`downsampling`.

        Returns:
            Logits, shape ``(N, num_classes, H, W)``.
        """
        if x.ndim != 4:
            raise ValueError(f"UNet expects (N, C, H, W) images, got shape {tuple(x.shape)}.")
        f = self.downsampling
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"UNet with {len(self.widths)} levels needs H and W divisible by {f}, got "
                f"{tuple(x.shape[-2:])}; pad or resize the images."
            )
        skips = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up, block in zip(self.up, self.decoder, strict=True):
            x = up(x)
            skip = skips.pop()
            x = block(torch.cat([skip, x], dim=1) if self.skip_connections else x)
        return self.head(x)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel dilated convolutions fused by a 1x1 conv.

    Branches: a 1x1 convolution, one 3x3 convolution per dilation rate, and (optionally) a
    global-average-pool branch broadcast back to every pixel. All keep H and W.

    Args:
        in_channels: Input channels.
        out_channels: Channels of every branch and of the fused output.
        rates: Dilation rates of the 3x3 branches. A 3x3 kernel with rate ``r`` spans
            ``2r + 1`` pixels.
        image_pooling: Add the global-context branch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rates: Sequence[int] = (1, 2, 4),
        image_pooling: bool = True,
    ) -> None:
        super().__init__()
        rates = tuple(int(r) for r in rates)
        if any(r < 1 for r in rates):
            raise ValueError(f"rates={rates}: dilation rates must be >= 1.")
        self.rates = rates
        self.branches = nn.ModuleList([conv_bn_relu(in_channels, out_channels, kernel_size=1)])
        for r in rates:
            self.branches.append(conv_bn_relu(in_channels, out_channels, dilation=r))
        # No BatchNorm on the pooled branch: it sees one value per channel and image.
        self.pooling = (
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU())
            if image_pooling
            else None
        )
        n_branches = len(self.branches) + (1 if image_pooling else 0)
        self.project = conv_bn_relu(n_branches * out_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fuse multi-rate context.

        Args:
            x: Features, shape ``(N, C_in, H, W)``.

        Returns:
            Features, shape ``(N, C_out, H, W)``.
        """
        outs = [branch(x) for branch in self.branches]
        if self.pooling is not None:
            outs.append(self.pooling(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


def iou_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    r"""Intersection over union of every class, :math:`|P \cap T| / |P \cup T|`.

    Args:
        pred: Predicted class ids, e.g. ``(N, H, W)``.
        target: True class ids, same shape.
        num_classes: Number of classes ``C``.

    Returns:
        float64 tensor ``(C,)``; NaN for a class absent from both ``pred`` and ``target``.
    """
    cm = confusion_matrix(pred, target, num_classes).double()
    inter = cm.diag()
    union = cm.sum(0) + cm.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.nan)


def mean_iou(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_background: bool = False
) -> float:
    """Mean of :func:`iou_per_class` over the classes present (NaNs skipped).

    Args:
        pred: Predicted class ids.
        target: True class ids.
        num_classes: Number of classes.
        ignore_background: Leave class 0 out of the mean.

    Returns:
        The mean IoU in ``[0, 1]``.
    """
    ious = iou_per_class(pred, target, num_classes)
    if ignore_background:
        ious = ious[1:]
    return float(ious.nanmean())


@torch.no_grad()
def predict_masks(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, device: torch.device | str | None = None
) -> torch.Tensor:
    """Class id of every pixel, computed in eval mode in batches.

    Args:
        model: A segmentation model returning logits ``(N, C, H, W)``.
        images: Images ``(N, C_in, H, W)``.
        batch_size: Images per forward pass.
        device: Where to run; ``None`` uses the model's device.

    Returns:
        int64 tensor ``(N, H, W)`` on the CPU.
    """
    if device is None:
        device = next(model.parameters()).device
    model.eval()
    out = [
        model(images[i : i + batch_size].to(device)).argmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)
