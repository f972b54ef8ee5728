"""Load torchvision state dicts into the cnnbook models (sections 14.6 and 14.9).

Our models name their layers for reading (``features.conv1``, ``stem.conv``,
``layer1.0.shortcut.conv``); torchvision numbers them. The renaming is a fixed table per
family, applied to every key of the state dict (suffixes such as ``.weight``,
``.running_mean`` and ``.num_batches_tracked`` are kept):

=========== ======================================== ==========================================
family      torchvision key prefix                   cnnbook key prefix
=========== ======================================== ==========================================
AlexNet     ``features.{0,3,6,8,10}``                ``features.conv{1..5}``
AlexNet     ``classifier.{1,4,6}``                   ``classifier.fc{6,7,8}``
VGG         ``features.{i}`` (i-th module, flat)     ``features.block{b}.conv{c}``
VGG         ``classifier.{0,3,6}``                   ``classifier.fc{6,7,8}``
ResNet      ``conv1`` / ``bn1`` (top level)          ``stem.conv`` / ``stem.bn``
ResNet      ``layer{s}.{k}.downsample.{0,1}``        ``layer{s}.{k}.shortcut.{conv,bn}``
ResNet      everything else (``layer*``, ``fc``)     unchanged
=========== ======================================== ==========================================

For VGG the flat index ``i`` follows the configuration: within block ``b`` each convolution
is followed by a ReLU and the block ends with a max-pool, so VGG-16's ``features.0, 2, 5, 7,
10, ...`` become ``block1.conv1, block1.conv2, block2.conv1, block2.conv2, block3.conv1, ...``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from cnnbook.models.classic import VGG, AlexNet
from cnnbook.models.resnet import ResNet

_ALEXNET_FEATURES = {0: "conv1", 3: "conv2", 6: "conv3", 8: "conv4", 10: "conv5"}
_ALEXNET_CLASSIFIER = {1: "fc6", 4: "fc7", 6: "fc8"}
_VGG_CLASSIFIER = {0: "fc6", 3: "fc7", 6: "fc8"}
_INDEXED = re.compile(r"^(features|classifier)\.(\d+)\.(.+)$")


def vgg_feature_names(convs_per_block: tuple[int, ...]) -> dict[int, str]:
    """Map torchvision's flat ``features`` indices of a VGG to our ``block{b}.conv{c}`` names.

    Args:
        convs_per_block: Convolutions in each block, e.g. ``(2, 2, 3, 3, 3)`` for VGG-16.

    Returns:
        ``{flat_index: "block{b}.conv{c}"}`` for every convolution.
    """
    names: dict[int, str] = {}
    index = 0
    for b, n in enumerate(convs_per_block, start=1):
        for c in range(1, n + 1):
            names[index] = f"block{b}.conv{c}"
            index += 2  # conv, relu
        index += 1  # max-pool
    return names


def _rename_indexed(key: str, features: dict[int, str], classifier: dict[int, str]) -> str:
    match = _INDEXED.match(key)
    if match is None:
        return key
    part, index, rest = match.group(1), int(match.group(2)), match.group(3)
    table = features if part == "features" else classifier
    if index not in table:
        raise ValueError(
            f"torchvision key {key!r} has no counterpart here (index {index} of {part!r} holds no "
            "weights in this architecture); is the state dict from a different model?"
        )
    return f"{part}.{table[index]}.{rest}"


def _rename_resnet(key: str) -> str:
    key = re.sub(r"^conv1\.", "stem.conv.", key)
    key = re.sub(r"^bn1\.", "stem.bn.", key)
    key = re.sub(r"\.downsample\.0\.", ".shortcut.conv.", key)
    return re.sub(r"\.downsample\.1\.", ".shortcut.bn.", key)


def rename_torchvision_keys(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module
) -> OrderedDict[str, torch.Tensor]:
    """Rename the keys of a torchvision state dict to the names used by ``model``.

    Args:
        state_dict: A torchvision AlexNet, VGG (without batch norm) or ResNet state dict.
        model: The cnnbook model it is meant for (:class:`AlexNet`, :class:`VGG` or
            :class:`ResNet`); its type picks the table in the module docstring.

    Returns:
        A new state dict with the same tensors under our names.

    Raises:
        TypeError: If ``model`` is not one of the supported families.
        ValueError: If a key does not fit the family's layout.
    """
    if isinstance(model, AlexNet):

        def rename(k: str) -> str:
            return _rename_indexed(k, _ALEXNET_FEATURES, _ALEXNET_CLASSIFIER)

    elif isinstance(model, VGG):
        features = vgg_feature_names(model.convs_per_block)

        def rename(k: str) -> str:
            return _rename_indexed(k, features, _VGG_CLASSIFIER)

    elif isinstance(model, ResNet):

        def rename(k: str) -> str:
            return _rename_resnet(k)

    else:
        raise TypeError(
            f"No torchvision key mapping for {type(model).__name__}; supported: AlexNet, VGG, ResNet."
        )
    return OrderedDict((rename(k), v) for k, v in state_dict.items())


def load_torchvision_state_dict(
    model: nn.Module, source: Mapping[str, torch.Tensor] | nn.Module
) -> nn.Module:
    """Copy torchvision weights (pretrained or random) into one of our models.

    Every tensor must find its place: missing or extra keys and shape mismatches raise
    ``ValueError`` before anything is copied.

    Args:
        model: Our :class:`AlexNet`, :class:`VGG` or :class:`ResNet`, built with the same
            configuration and ``num_classes`` as the source.
        source: A torchvision model or its ``state_dict()``.

    Returns:
        ``model``, with the weights loaded (modified in place).

    Raises:
        TypeError: If ``model`` is not a supported family or ``source`` is not a mapping/module.
        ValueError: If the keys or shapes do not line up.
    """
    if isinstance(source, nn.Module):
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise TypeError(f"source must be a state dict or nn.Module, got {type(source).__name__}.")
    renamed = rename_torchvision_keys(source, model)
    target = model.state_dict()
    missing = [k for k in target if k not in renamed]
    extra = [k for k in renamed if k not in target]
    if missing or extra:
        raise ValueError(
            f"State dict does not fit {type(model).__name__}: missing {missing[:5]}, "
            f"unexpected {extra[:5]}. Build our model with the same architecture as the source."
        )
    for key, tensor in renamed.items():
        if tensor.shape != target[key].shape:
            raise ValueError(
                f"Shape mismatch at {key!r}: source {tuple(tensor.shape)}, model "
                f"{tuple(target[key].shape)}. Check num_classes and the configuration."
            )
    model.load_state_dict(renamed, strict=True)
    return model
