"""Residual networks (sections 14.6 and 14.7).

* :class:`BasicBlock` - two 3x3 convolutions plus a skip connection (ResNet-18/34).
* :class:`Bottleneck` - 1x1 reduce, 3x3, 1x1 expand plus a skip connection (ResNet-50 and
  deeper); the stride sits on the 3x3 convolution, as in torchvision ("ResNet v1.5").
* :class:`ResNet` with builders :func:`resnet18`, :func:`resnet34`, :func:`resnet50` (ImageNet
  stem by default, ``stem="cifar"`` for 32x32 images) and :func:`resnet_cifar`, the thin
  6n+2-layer family used for CIFAR-10 in the ResNet paper.

When a block changes the shape (stride 2 or a new channel count) its shortcut is a projection:
a strided 1x1 convolution followed by batch norm. Every block accepts ``residual=False``, which
removes the skip connection and turns the network into its "plain" counterpart with the same
layers, so the two can be compared (the degradation experiment in section 14.6).

Parameter counts with 1000 classes equal torchvision's: ResNet-18 11,689,512, ResNet-34
21,797,672, ResNet-50 25,557,032. The key mapping from torchvision lives in
:mod:`cnnbook.models.convert`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

STEMS = ("imagenet", "cifar")


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """1x1 convolution with stride, then batch norm: matches shapes across a block."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            bn=nn.BatchNorm2d(out_channels),
        )
    )


def _shortcut(in_channels: int, out_channels: int, stride: int, residual: bool) -> nn.Module | None:
    if not residual:
        return None
    if stride != 1 or in_channels != out_channels:
        return _projection(in_channels, out_channels, stride)
    return nn.Identity()


def _check_block_args(in_channels: int, out_channels: int, stride: int) -> None:
    for key, value in {"in_channels": in_channels, "out_channels": out_channels}.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}.")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}.")


class BasicBlock(nn.Module):
    """Residual block with two 3x3 convolutions: ``y = ReLU(F(x) + shortcut(x))``.

    ``F`` is conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN. The shortcut is the identity when
    shapes match and a 1x1 projection otherwise. Shapes:
    ``(N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)``.

    Args:
        in_channels: Channels entering the block.
        out_channels: Channels leaving the block.
        stride: 1 keeps the spatial size, 2 halves it (on the first convolution).
        residual: ``False`` drops the skip connection (a "plain" block).
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, residual: bool = True) -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.residual = residual
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Feature maps of shape ``(N, in_channels, H, W)``.

        Returns:
            Feature maps of shape ``(N, out_channels, H', W')`` with ``H' = ceil(H / stride)``.
        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """Residual block 1x1 (reduce) -> 3x3 -> 1x1 (expand): ``y = ReLU(F(x) + shortcut(x))``.

    ``F`` is conv1x1 -> BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> conv1x1 -> BN. The two
    1x1 convolutions shrink the channels to ``bottleneck_channels`` for the costly 3x3
    convolution and widen them again. Shapes:
    ``(N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)``.

    Args:
        in_channels: Channels entering the block.
        bottleneck_channels: Channels of the inner 3x3 convolution.
        out_channels: Channels leaving the block; ``None`` means ``4 * bottleneck_channels``.
        stride: 1 keeps the spatial size, 2 halves it (on the 3x3 convolution).
        residual: ``False`` drops the skip connection (a "plain" block).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        bottleneck_channels: int,
        out_channels: int | None = None,
        stride: int = 1,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if out_channels is None:
            out_channels = self.expansion * bottleneck_channels
        _check_block_args(in_channels, out_channels, stride)
        _check_block_args(bottleneck_channels, out_channels, stride)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.residual = residual
        self.conv1 = nn.Conv2d(in_channels, bottleneck_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(bottleneck_channels)
        self.conv2 = nn.Conv2d(
            bottleneck_channels,
            bottleneck_channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            bias=False,
        )
        self.bn2 = nn.BatchNorm2d(bottleneck_channels)
        self.conv3 = nn.Conv2d(bottleneck_channels, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Feature maps of shape ``(N, in_channels, H, W)``.

        Returns:
            Feature maps of shape ``(N, out_channels, H', W')`` with ``H' = ceil(H / stride)``.
        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class ResNet(nn.Module):
    """A stem, stages of residual blocks, global average pooling and one linear layer.

    Stage ``i`` (named ``layer{i}``) holds ``blocks_per_stage[i]`` blocks of width
    ``widths[i]``; every stage after the first halves the spatial size with its first block.

    * ``stem="imagenet"``: 7x7 conv stride 2 -> BN -> ReLU -> 3x3 max-pool stride 2 (224x224
      input becomes 56x56 before ``layer1``, 7x7 after the last stage).
    * ``stem="cifar"``: 3x3 conv stride 1 -> BN -> ReLU, no pooling (32x32 stays 32x32, so
      the last of four stages sees 4x4 maps).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        blocks_per_stage: Number of blocks in each stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: Number of output classes.
        stem: ``"imagenet"`` or ``"cifar"``.
        widths: Block width of each stage (for :class:`Bottleneck` the inner width; the stage
            outputs ``4 * width`` channels). The stem outputs ``widths[0]`` channels.
        in_channels: Channels of the input image.
        residual: ``False`` builds the plain network (no skip connections anywhere).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: Sequence[int],
        num_classes: int = 1000,
        stem: str = "imagenet",
        widths: Sequence[int] = (64, 128, 256, 512),
        in_channels: int = 3,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if block not in (BasicBlock, Bottleneck):
            raise TypeError(f"block must be BasicBlock or Bottleneck, got {block!r}.")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}.")
        if len(blocks_per_stage) != len(widths) or not blocks_per_stage:
            raise ValueError(
                f"blocks_per_stage {tuple(blocks_per_stage)} and widths {tuple(widths)} need "
                "the same, non-zero length (one entry per stage)."
            )
        if any(not isinstance(n, int) or n < 1 for n in blocks_per_stage):
            raise ValueError(f"every stage needs at least one block, got {tuple(blocks_per_stage)}.")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
        self.in_channels = in_channels
        self.stem_kind = stem
        self.residual = residual
        stem_width = widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, stem_width, kernel_size=7, stride=2, padding=3, bias=False),
                    bn=nn.BatchNorm2d(stem_width),
                    relu=nn.ReLU(inplace=True),
                    pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
                )
            )
        else:
            self.stem = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False),
                    bn=nn.BatchNorm2d(stem_width),
                    relu=nn.ReLU(inplace=True),
                )
            )
        channels = stem_width
        self.stage_names: list[str] = []
        for i, (n, width) in enumerate(zip(blocks_per_stage, widths, strict=True), start=1):
            blocks: list[nn.Module] = []
            for j in range(n):
                stride = 2 if (i > 1 and j == 0) else 1
                if block is BasicBlock:
                    blk: BasicBlock | Bottleneck = BasicBlock(channels, width, stride, residual=residual)
                else:
                    blk = Bottleneck(channels, width, stride=stride, residual=residual)
                blocks.append(blk)
                channels = blk.out_channels
            name = f"layer{i}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He-normal (fan_out) convolutions and unit BN, as torchvision does.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and all stages, before pooling.

        Args:
            x: Images of shape ``(N, in_channels, H, W)``.

        Returns:
            Feature maps of shape ``(N, num_features, H', W')`` (7x7 for 224x224 input with the
            ImageNet stem).
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"ResNet expects a torch.Tensor, got {type(x).__name__}.")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNet expects a batch of shape (N, {self.in_channels}, H, W), got "
                f"{tuple(x.shape)}; add a batch dimension with x.unsqueeze(0) for one image."
            )
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: Images of shape ``(N, in_channels, H, W)``.

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        x = self.avgpool(self.forward_features(x))
        return self.fc(torch.flatten(x, 1))


def resnet18(num_classes: int = 1000, stem: str = "imagenet") -> ResNet:
    """ResNet-18: BasicBlocks (2, 2, 2, 2); 11,689,512 parameters with 1000 classes.

    Args:
        num_classes: Number of output classes.
        stem: ``"imagenet"`` (224x224 input) or ``"cifar"`` (32x32 input).

    Returns:
        The model.
    """
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, stem=stem)


def resnet34(num_classes: int = 1000, stem: str = "imagenet") -> ResNet:
    """ResNet-34: BasicBlocks (3, 4, 6, 3); 21,797,672 parameters with 1000 classes.

    Args:
        num_classes: Number of output classes.
        stem: ``"imagenet"`` (224x224 input) or ``"cifar"`` (32x32 input).

    Returns:
        The model.
    """
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, stem=stem)


def resnet50(num_classes: int = 1000, stem: str = "imagenet") -> ResNet:
    """ResNet-50: Bottlenecks (3, 4, 6, 3); 25,557,032 parameters with 1000 classes.

    Args:
        num_classes: Number of output classes.
        stem: ``"imagenet"`` (224x224 input) or ``"cifar"`` (32x32 input).

    Returns:
        The model.
    """
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, stem=stem)


def resnet_cifar(depth: int = 20, num_classes: int = 10, width: int = 16, residual: bool = True) -> ResNet:
    """The CIFAR-10 family of the ResNet paper: ``depth = 6n + 2`` layers with weights.

    A 3x3 stem, then three stages of ``n`` BasicBlocks with ``width``, ``2 * width`` and
    ``4 * width`` channels on 32x32, 16x16 and 8x8 maps, global average pooling and a linear
    layer. Depth 20, 32, 44, 56 and 110 are the paper's choices. (The paper padded the
    shortcut with zeros where shapes change; here the shortcut is a 1x1 projection.)

    Args:
        depth: Number of weighted layers; ``depth - 2`` must be divisible by 6.
        num_classes: Number of output classes.
        width: Channels of the first stage.
        residual: ``False`` builds the plain network with the same layers.

    Returns:
        The model.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth!r}.")
    n = (depth - 2) // 6
    return ResNet(
        BasicBlock,
        (n, n, n),
        num_classes=num_classes,
        stem="cifar",
        widths=(width, 2 * width, 4 * width),
        residual=residual,
    )
