"""cnnbook.interpret: hooks, feature maps, Grad-CAM (against the grad-cam package), act. max."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF
from torch import nn

from cnnbook import interpret

pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

# Grad-CAM min-max scales a float32 map, so summation-order rounding (~1e-7 relative) in the
# channel sum can grow to a few 1e-6 after scaling; anything real would be far larger.
GRADCAM_ATOL = 1e-5


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_get_layer_and_unknown_name(resnet: nn.Module) -> None:
    assert interpret.get_layer(resnet, "layer4.1.conv2") is resnet.layer4[1].conv2
    with pytest.raises(ValueError, match="layer4"):
        interpret.get_layer(resnet, "layer5")
    with pytest.raises(ValueError, match="no layer named"):
        interpret.get_layer(resnet, "")


def test_first_and_last_conv(resnet: nn.Module) -> None:
    name, conv = interpret.first_conv(resnet)
    assert name == "conv1"
    assert tuple(conv.weight.shape) == (64, 3, 7, 7)
    assert interpret.last_conv_name(resnet) == "layer4.1.conv2"
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        interpret.first_conv(nn.Linear(2, 2))


def test_feature_maps_equal_manual_forward(resnet: nn.Module, batch: torch.Tensor) -> None:
    maps = interpret.feature_maps(resnet, batch, ["layer1", "layer4"])
    assert list(maps) == ["layer1", "layer4"]
    with torch.no_grad():
        stem = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(batch))))
        l1 = resnet.layer1(stem)
        l4 = resnet.layer4(resnet.layer3(resnet.layer2(l1)))
    assert maps["layer1"].shape == (2, 64, 16, 16)
    assert maps["layer4"].shape == (2, 512, 2, 2)
    torch.testing.assert_close(maps["layer1"], l1)
    torch.testing.assert_close(maps["layer4"], l4)
    assert _hook_count(resnet) == 0
    single = interpret.feature_maps(resnet, batch, "layer2")
    assert single["layer2"].shape == (2, 128, 8, 8)
    with pytest.raises(ValueError, match="batch"):
        interpret.feature_maps(resnet, batch[0], "layer1")


class _Exploding(nn.Module):
    """Runs a conv, then fails: the hook on the conv has fired when the error comes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom")


def test_hooks_removed_when_forward_raises() -> None:
    model = _Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        interpret.feature_maps(model, torch.zeros(1, 3, 8, 8), "conv")
    assert _hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        interpret.grad_cam(model, torch.zeros(1, 3, 8, 8), "conv", 0)
    assert _hook_count(model) == 0
    raising_first = nn.Sequential(_Raiser(), nn.Conv2d(3, 4, 3))
    with pytest.raises(RuntimeError, match="boom"):
        interpret.activation_maximization(
            raising_first, "1", 0, mean=[0.5] * 3, std=[0.5] * 3, size=8, steps=1
        )
    assert _hook_count(raising_first) == 0
    assert all(p.requires_grad for p in raising_first.parameters())


class _Raiser(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_layer_output_stops_early_and_keeps_the_graph(resnet: nn.Module, batch: torch.Tensor) -> None:
    calls = []
    handle = resnet.layer4.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        out = interpret.layer_output(resnet, "layer2", batch)
    finally:
        handle.remove()
    assert not calls, "layers after the target still ran"
    expected = interpret.feature_maps(resnet, batch, "layer2")["layer2"]
    torch.testing.assert_close(out.detach(), expected)
    assert out.requires_grad
    assert _hook_count(resnet) == 0
    # "_Exploding" raises after its conv: stopping at the conv never reaches the error.
    conv_out = interpret.layer_output(_Exploding(), "conv", torch.zeros(1, 3, 8, 8))
    assert conv_out.shape == (1, 4, 6, 6)
    with pytest.raises(ValueError, match="did not run"):
        interpret.layer_output(_Unused(), "extra", torch.zeros(1, 2))


class _Unused(nn.Module):
    """Has a layer its forward pass never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.extra = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_hooks_removed_when_a_later_name_is_unknown(resnet: nn.Module) -> None:
    with pytest.raises(ValueError, match="nope"), interpret.capture_outputs(resnet, ["layer1", "nope"]):
        pass
    assert _hook_count(resnet) == 0


def _reference_cam(model: nn.Module, layer: str, x: torch.Tensor, classes: list[int] | None) -> np.ndarray:
    targets = None if classes is None else [ClassifierOutputTarget(c) for c in classes]
    with GradCAM(model=model, target_layers=[interpret.get_layer(model, layer)]) as cam:
        return cam(input_tensor=x, targets=targets)


@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer4.1.conv2"])
def test_grad_cam_matches_grad_cam_package(resnet: nn.Module, batch: torch.Tensor, layer: str) -> None:
    ours = interpret.grad_cam(resnet, batch, layer, [3, 7])
    ref = _reference_cam(resnet, layer, batch, [3, 7])
    assert ours.shape == (2, 64, 64)
    assert ref.shape == (2, 64, 64)
    assert float(ours.min()) >= 0.0
    assert float(ours.max()) <= 1.0
    diff = np.abs(ours.numpy() - ref).max()
    assert diff < GRADCAM_ATOL, f"max |ours - grad-cam| = {diff:.2e}"
    # The two classes give different maps, so the class really steers the result.
    assert not torch.allclose(ours, interpret.grad_cam(resnet, batch, layer, [7, 3]), atol=1e-3)


def test_grad_cam_default_is_top_class_and_int_target(resnet: nn.Module, batch: torch.Tensor) -> None:
    ours = interpret.grad_cam(resnet, batch, "layer4")
    ref = _reference_cam(resnet, "layer4", batch, None)
    assert np.abs(ours.numpy() - ref).max() < GRADCAM_ATOL
    one = interpret.grad_cam(resnet, batch, "layer4", 5)
    ref5 = _reference_cam(resnet, "layer4", batch, [5, 5])
    assert np.abs(one.numpy() - ref5).max() < GRADCAM_ATOL


def test_grad_cam_raw_map_and_side_effects(resnet: nn.Module, batch: torch.Tensor) -> None:
    resnet.zero_grad(set_to_none=True)  # the grad-cam package leaves gradients behind
    raw = interpret.grad_cam(resnet, batch, "layer4", [1, 2], upsample=False)
    assert raw.shape == (2, 2, 2)
    assert float(raw.min()) >= 0.0
    assert all(p.grad is None for p in resnet.parameters()), "parameters got gradients"
    assert _hook_count(resnet) == 0
    with pytest.raises(ValueError, match="2 images"):
        interpret.grad_cam(resnet, batch, "layer4", [1, 2, 3])
    with pytest.raises(ValueError, match="no layer named"):
        interpret.grad_cam(resnet, batch, "layer9", 0)


def test_grad_cam_ignores_later_in_place_ops(resnet: nn.Module, batch: torch.Tensor) -> None:
    # In a BasicBlock, bn1's output is overwritten by an in-place ReLU. Our map must be the
    # Grad-CAM of the BN output itself, i.e. what the package gives on a copy without in-place.
    plain = copy.deepcopy(resnet)
    for module in plain.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    ours = interpret.grad_cam(resnet, batch, "layer2.0.bn1", [3, 7])
    ref = _reference_cam(plain, "layer2.0.bn1", batch, [3, 7])
    assert np.abs(ours.numpy() - ref).max() < GRADCAM_ATOL


def test_gaussian_blur_matches_torchvision() -> None:
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    sigma = 1.2
    radius = round(3 * sigma)
    ref = TF.gaussian_blur(x, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])
    torch.testing.assert_close(interpret.gaussian_blur(x, sigma), ref, atol=1e-6, rtol=1e-5)
    assert interpret.gaussian_blur(x, 0.0) is x


def test_total_variation_known_values() -> None:
    assert interpret.total_variation(torch.ones(3, 5, 5)) == 0.0
    stripes = torch.zeros(1, 4, 4)
    stripes[..., 1::2] = 1.0  # columns alternate: every horizontal step changes by 1
    assert interpret.total_variation(stripes) == pytest.approx(0.5)


def test_activation_maximization_raises_activation_and_regularises(resnet: nn.Module) -> None:
    before = copy.deepcopy(resnet.state_dict())
    kwargs = {
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "size": 48,
        "steps": 24,
        "lr": 0.05,
        "seed": 0,
    }
    reg = interpret.activation_maximization(resnet, "layer2", 5, **kwargs)
    assert reg.image.shape == (3, 48, 48)
    assert float(reg.image.min()) >= 0.0
    assert float(reg.image.max()) <= 1.0
    assert len(reg.history) == 24
    assert reg.history[-1] > reg.start + 0.1, (reg.start, reg.history[-1])
    raw = interpret.activation_maximization(resnet, "layer2", 5, jitter=0, blur_every=0, decay=0.0, **kwargs)
    # Blur, jitter and decay suppress pixel-level noise: less high-frequency energy.
    assert interpret.total_variation(reg.image) < 0.8 * interpret.total_variation(raw.image)
    for key, value in resnet.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
    assert all(p.requires_grad for p in resnet.parameters())
    with pytest.raises(ValueError, match="out of range"):
        interpret.activation_maximization(resnet, "layer2", 999, **kwargs)
