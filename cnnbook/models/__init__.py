"""Model zoo for the architecture sections (14.5-14.8, 14.11, 14.12).

Each submodule holds one family of networks; this package re-exports the public builders so
notebooks can write ``from cnnbook.models import resnet18``. Keep this file a plain list of
imports plus ``__all__`` (several authors add to it).
"""

from __future__ import annotations

from cnnbook.models.classic import (
    VGG,
    VGG_CONFIGS,
    AlexNet,
    LeNet5,
    SimpleCNN,
    make_vgg_block,
    vgg11,
    vgg16,
)
from cnnbook.models.convert import load_torchvision_state_dict, rename_torchvision_keys
from cnnbook.models.efficientnet import (
    EfficientNetLite,
    convert_reference_state_dict,
    efficientnet_lite0,
)
from cnnbook.models.fast import FastCIFARNet
from cnnbook.models.layers import ConvBNAct
from cnnbook.models.mobile import (
    DepthwiseSeparableConv,
    InvertedResidual,
    MBConv,
    SqueezeExcitation,
)
from cnnbook.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet_cifar,
)

__all__: list[str] = [
    "VGG",
    "VGG_CONFIGS",
    "AlexNet",
    "BasicBlock",
    "Bottleneck",
    "ConvBNAct",
    "DepthwiseSeparableConv",
    "EfficientNetLite",
    "FastCIFARNet",
    "InvertedResidual",
    "MBConv",
    "SqueezeExcitation",
    "convert_reference_state_dict",
    "efficientnet_lite0",
    "LeNet5",
    "ResNet",
    "SimpleCNN",
    "load_torchvision_state_dict",
    "make_vgg_block",
    "rename_torchvision_keys",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet_cifar",
    "vgg11",
    "vgg16",
]
