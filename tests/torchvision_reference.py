"""Shared helpers for tests that compare cnnbook models with torchvision's (not a test module)."""

from __future__ import annotations

import torch
from torch import nn

from cnnbook.models import load_torchvision_state_dict


def randomise_batchnorm_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics.

    Freshly built BN layers are identities in eval mode (mean 0, var 1, weight 1, bias 0), which
    would hide a wrong key mapping between BN layers of equal size.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return model


def max_abs_diff_after_loading(ours: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    """Load ``reference``'s weights into ``ours`` and return max |ours(x) - reference(x)| (eval).

    Raises AssertionError when the outputs are not allclose.
    """
    randomise_batchnorm_(reference)
    load_torchvision_state_dict(ours, reference)
    ours.eval()
    reference.eval()
    with torch.no_grad():
        got, want = ours(x), reference(x)
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(scale, 1.0))
    return (got - want).abs().max().item()
