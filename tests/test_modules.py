"""cnnbook.modules: layer access, unwrap, parameter counts and the one batch-norm freeze."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnbook import modules


def _bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4, affine=False)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def test_get_and_set_layer_by_dotted_name() -> None:
    net = _bn_net()
    assert modules.get_layer(net, "4.0") is net[4][0]
    new = nn.Conv2d(4, 4, 1)
    modules.set_layer(net, "4.0", new)
    assert net[4][0] is new
    modules.set_layer(net, "7", nn.Linear(4, 5))
    assert net(torch.randn(2, 3, 9, 9)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"no layer named '4\.9'.*Did you mean"):
        modules.set_layer(net, "4.9", nn.Identity())
    with pytest.raises(TypeError, match="needs an nn.Module"):
        modules.set_layer(net, "7", "linear")


def test_frozen_batchnorm_has_one_home() -> None:
    from cnnbook import pretrained

    assert not hasattr(pretrained, "FrozenBatchNorm")
    assert not hasattr(pretrained, "freeze_batchnorm")


def test_count_parameters_counts_shared_once() -> None:
    lin = nn.Linear(3, 3)
    shared = nn.Sequential(lin, nn.ReLU(), lin)
    assert modules.count_parameters(shared) == 12
    lin.bias.requires_grad_(False)
    assert modules.count_parameters(shared, trainable_only=True) == 9
    with pytest.raises(TypeError, match="expects an nn.Module"):
        modules.count_parameters([lin])


def test_freeze_batchnorm_has_one_meaning() -> None:
    """Frozen: stored statistics used and kept, scale/shift not trained, also after .train()."""
    net = _bn_net().train()
    bns = modules.batchnorm_layers(net)
    assert len(bns) == 2
    before = {k: v.clone() for k, v in net.state_dict().items()}
    guard = modules.freeze_batchnorm(net)
    assert not any(bn.training for bn in bns)
    assert net.training
    assert net[3].training
    assert not any(p.requires_grad for bn in bns for p in bn.parameters())
    assert all(p.requires_grad for p in net[0].parameters())  # the rest still trains
    net.train()  # what every training loop does first
    x = torch.randn(4, 3, 9, 9) * 3 + 2
    net(x)
    assert not any(bn.training for bn in bns)  # the guard put them back before they ran
    for key, value in net.state_dict().items():
        if "running" in key or "num_batches" in key:
            assert torch.equal(value, before[key]), key
    guard.remove()
    net.train()
    net(x)
    assert not torch.equal(net[1].running_mean, before["1.running_mean"])  # guard off: updates


def test_frozen_batchnorm_guard_follows_requires_grad() -> None:
    net = _bn_net().train()
    guard = modules.FrozenBatchNorm(net)
    net[1].requires_grad_(False)  # frozen by the parameter-freezing helpers (14.9)
    net(torch.randn(2, 3, 9, 9))
    assert not net[1].training
    assert net[4][1].training  # affine=False layer: never frozen here
    net[1].requires_grad_(True)
    net.train()
    net(torch.randn(2, 3, 9, 9))
    assert net[1].training
    guard.remove()
    assert guard.handles == []
