"""Classic CNNs before residual connections (sections 14.5 and 14.6).

* :class:`SimpleCNN` - two conv blocks and two fully connected layers for 32x32 RGB input
  (CIFAR-10), the network assembled in section 14.5.
* :class:`LeNet5` - LeCun's digit recogniser: 32x32 grayscale input, tanh, average pooling
  (61,706 parameters).
* :class:`AlexNet` - the single-GPU variant that torchvision ships (64-192-384-256-256 channels,
  no local response normalisation; 61,100,840 parameters).
* :func:`make_vgg_block`, :class:`VGG`, :func:`vgg11`, :func:`vgg16` - VGG built from blocks of
  3x3 convolutions (VGG-16: 138,357,544 parameters).

Layers carry readable names (``features.conv1``, ``classifier.fc6``); the mapping from
torchvision's numbered keys lives in :mod:`cnnbook.models.convert`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

#: VGG configurations as convolutions per block (output channels 64, 128, 256, 512, 512).
VGG_CONFIGS: dict[str, tuple[int, int, int, int, int]] = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
#: Output channels of the five VGG blocks.
VGG_WIDTHS: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)


def _check_image(x: torch.Tensor, channels: int, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"{name} expects a batch of shape (N, {channels}, H, W), got {tuple(x.shape)}; "
            "add a batch dimension with x.unsqueeze(0) if you pass a single image."
        )


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}.")


class SimpleCNN(nn.Module):
    """Two conv blocks (conv 3x3 -> ReLU -> max-pool 2x2) and two fully connected layers.

    Shapes for a 32x32 input: ``(N, 3, 32, 32) -> (N, 32, 16, 16) -> (N, 64, 8, 8) ->
    (N, 4096) -> (N, 256) -> (N, num_classes)``. With 10 classes it has 1,070,794 parameters.

    Args:
        num_classes: Number of output classes.
        in_channels: Channels of the input image (3 for RGB).
        image_size: Side of the square input; must be divisible by 4.
        dropout: Dropout probability before the last layer.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_positive(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 pools), got {image_size}.")
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        side = image_size // 4
        self.fc1 = nn.Linear(64 * side * side, 256)
        self.fc2 = nn.Linear(256, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: Images of shape ``(N, in_channels, image_size, image_size)``.

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        _check_image(x, self.in_channels, "SimpleCNN")
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


class LeNet5(nn.Module):
    """LeNet-5 for 32x32 grayscale digits: tanh activations and 2x2 average pooling.

    Shapes: ``(N, 1, 32, 32) -> C1 (N, 6, 28, 28) -> S2 (N, 6, 14, 14) -> C3 (N, 16, 10, 10)
    -> S4 (N, 16, 5, 5) -> C5 (N, 120, 1, 1) -> F6 (N, 84) -> (N, num_classes)``.
    With 10 classes it has 61,706 parameters. (C3 here connects to all six S2 maps; the 1998
    paper used a hand-picked partial connection table.)

    Args:
        num_classes: Number of output classes.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        _check_positive(num_classes=num_classes)
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(1, 6, kernel_size=5),
                tanh1=nn.Tanh(),
                s2=nn.AvgPool2d(kernel_size=2, stride=2),
                c3=nn.Conv2d(6, 16, kernel_size=5),
                tanh3=nn.Tanh(),
                s4=nn.AvgPool2d(kernel_size=2, stride=2),
                c5=nn.Conv2d(16, 120, kernel_size=5),
                tanh5=nn.Tanh(),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(f6=nn.Linear(120, 84), tanh6=nn.Tanh(), output=nn.Linear(84, num_classes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of digits.

        Args:
            x: Images of shape ``(N, 1, 32, 32)`` (pad 28x28 MNIST digits by 2 on each side).

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        _check_image(x, 1, "LeNet5")
        if x.shape[-2:] != (32, 32):
            raise ValueError(
                f"LeNet5 expects 32x32 images, got {tuple(x.shape[-2:])}; pad 28x28 MNIST "
                "digits with torch.nn.functional.pad(x, (2, 2, 2, 2))."
            )
        return self.classifier(torch.flatten(self.features(x), 1))


class AlexNet(nn.Module):
    """AlexNet as in torchvision: five conv layers, adaptive 6x6 pooling, three FC layers.

    This is the single-tower variant (64, 192, 384, 256, 256 channels, no local response
    normalisation). Shapes for a 224x224 input: ``conv1 (N, 64, 55, 55) -> pool1 (N, 64, 27, 27)
    -> conv2 (N, 192, 27, 27) -> pool2 (N, 192, 13, 13) -> conv3..conv5 (N, 256, 13, 13) ->
    pool5 (N, 256, 6, 6) -> fc6, fc7 (N, 4096) -> fc8 (N, num_classes)``.
    With 1000 classes it has 61,100,840 parameters.

    Args:
        num_classes: Number of output classes.
        dropout: Dropout probability before fc6 and fc7.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        _check_positive(num_classes=num_classes)
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
                relu1=nn.ReLU(inplace=True),
                pool1=nn.MaxPool2d(kernel_size=3, stride=2),
                conv2=nn.Conv2d(64, 192, kernel_size=5, padding=2),
                relu2=nn.ReLU(inplace=True),
                pool2=nn.MaxPool2d(kernel_size=3, stride=2),
                conv3=nn.Conv2d(192, 384, kernel_size=3, padding=1),
                relu3=nn.ReLU(inplace=True),
                conv4=nn.Conv2d(384, 256, kernel_size=3, padding=1),
                relu4=nn.ReLU(inplace=True),
                conv5=nn.Conv2d(256, 256, kernel_size=3, padding=1),
                relu5=nn.ReLU(inplace=True),
                pool5=nn.MaxPool2d(kernel_size=3, stride=2),
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            OrderedDict(
                drop6=nn.Dropout(dropout),
                fc6=nn.Linear(256 * 6 * 6, 4096),
                relu6=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
                fc7=nn.Linear(4096, 4096),
                relu7=nn.ReLU(inplace=True),
                fc8=nn.Linear(4096, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: Images of shape ``(N, 3, H, W)``, nominally 224x224 (at least 63x63).

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        _check_image(x, 3, "AlexNet")
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def make_vgg_block(in_channels: int, out_channels: int, num_convs: int) -> nn.Sequential:
    """One VGG block: ``num_convs`` times (3x3 conv, padding 1 -> ReLU), then 2x2 max-pool.

    The convolutions keep the spatial size; the pool halves it:
    ``(N, in_channels, H, W) -> (N, out_channels, H // 2, W // 2)``.

    Args:
        in_channels: Channels entering the block.
        out_channels: Channels of every convolution in the block.
        num_convs: Number of 3x3 convolutions.

    Returns:
        A ``nn.Sequential`` with layers named ``conv1, relu1, ..., pool``.
    """
    _check_positive(in_channels=in_channels, out_channels=out_channels, num_convs=num_convs)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(1, num_convs + 1):
        layers[f"conv{i}"] = nn.Conv2d(
            in_channels if i == 1 else out_channels, out_channels, kernel_size=3, padding=1
        )
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
    layers["pool"] = nn.MaxPool2d(kernel_size=2, stride=2)
    return nn.Sequential(layers)


class VGG(nn.Module):
    """VGG: five blocks of 3x3 convolutions, adaptive 7x7 pooling, three FC layers.

    Shapes for a 224x224 input: the blocks give ``(N, 64, 112, 112) -> (N, 128, 56, 56) ->
    (N, 256, 28, 28) -> (N, 512, 14, 14) -> (N, 512, 7, 7)``; flattening gives 25,088 features,
    then ``fc6, fc7 (N, 4096) -> fc8 (N, num_classes)``.

    Args:
        convs_per_block: Number of 3x3 convolutions in each of the five blocks, e.g.
            ``(2, 2, 3, 3, 3)`` for VGG-16 (see :data:`VGG_CONFIGS`).
        num_classes: Number of output classes.
        dropout: Dropout probability after fc6 and fc7.
        in_channels: Channels of the input image.
    """

    def __init__(
        self,
        convs_per_block: tuple[int, ...],
        num_classes: int = 1000,
        dropout: float = 0.5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(convs_per_block) != len(VGG_WIDTHS):
            raise ValueError(
                f"convs_per_block needs one entry per block ({len(VGG_WIDTHS)}), got "
                f"{convs_per_block!r}; see VGG_CONFIGS for the standard ones."
            )
        _check_positive(num_classes=num_classes, in_channels=in_channels)
        self.in_channels = in_channels
        self.convs_per_block = tuple(convs_per_block)
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for b, (width, n) in enumerate(zip(VGG_WIDTHS, convs_per_block, strict=True), start=1):
            blocks[f"block{b}"] = make_vgg_block(channels, width, n)
            channels = width
        self.features = nn.Sequential(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(512 * 7 * 7, 4096),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(4096, 4096),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
                fc8=nn.Linear(4096, num_classes),
            )
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # The scheme torchvision uses: He-normal convs, small-normal linear layers, zero biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: Images of shape ``(N, in_channels, H, W)``, nominally 224x224 (at least 32x32).

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        _check_image(x, self.in_channels, "VGG")
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg11(num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG-11 (configuration A): 8 conv + 3 FC layers, 132,863,336 parameters for 1000 classes.

    Args:
        num_classes: Number of output classes.
        dropout: Dropout probability after fc6 and fc7.

    Returns:
        The model.
    """
    return VGG(VGG_CONFIGS["vgg11"], num_classes=num_classes, dropout=dropout)


def vgg16(num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG-16 (configuration D): 13 conv + 3 FC layers, 138,357,544 parameters for 1000 classes.

    Args:
        num_classes: Number of output classes.
        dropout: Dropout probability after fc6 and fc7.

    Returns:
        The model.
    """
    return VGG(VGG_CONFIGS["vgg16"], num_classes=num_classes, dropout=dropout)
