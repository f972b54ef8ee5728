"""cnnbook.checks.core helpers called directly: source scans, value checks, module helpers.

The checkers built on them are tested end to end in test_checks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks import CheckFailed, core
from cnnbook.checks.beyond_classification import random_boxes

RELU = {"torch.nn.functional.relu": "write ReLU yourself."}


# ---------------------------------------------------------------- student answers to scan
def conv_answer(x, kernel):
    out = torch.nn.functional.conv2d(x, kernel)
    return out.sum(dim=0) + len(kernel)


def relu_through_alias(x):
    return F.relu(x) * 2


def relu_by_full_path(x):
    return torch.nn.functional.relu(x)


def relu_imported_inside(x):
    from torch.nn.functional import relu as r

    return r(x)


def relu(x):  # the student's own function, named like torch's
    return x.clamp(min=0)


def uses_own_relu(x):
    return relu(x) + 1


class ReluNet(nn.Module):
    def forward(self, x):
        return F.relu(x)


# ---------------------------------------------------------------- forbid_uses
@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (
            relu_through_alias,
            r"relu_through_alias uses `F\.relu` \(torch\.nn\.functional\.relu\): "
            r"write ReLU yourself\.",
        ),
        (relu_by_full_path, r"relu_by_full_path uses `torch\.nn\.functional\.relu`: write ReLU"),
        (relu_imported_inside, r"relu_imported_inside uses `torch\.nn\.functional\.relu`"),
        (ReluNet, r"ReluNet uses `F\.relu` \(torch\.nn\.functional\.relu\)"),
        (F.relu, r"you passed `torch\.nn\.functional\.relu` itself: write ReLU yourself\."),
    ],
)
def test_forbid_uses_finds_the_library_function(answer, match: str) -> None:
    with pytest.raises(CheckFailed, match=match):
        core.forbid_uses(answer, RELU)


def test_forbid_uses_allows_everything_else() -> None:
    assert core.forbid_uses(uses_own_relu, RELU) is None  # a same-named function of one's own
    assert core.forbid_uses(relu, RELU) is None
    assert core.forbid_uses(conv_answer, RELU) is None
    assert core.forbid_uses(torch.sigmoid, RELU) is None  # unreadable source: skipped
    # a target that cannot be resolved (module not imported) only matches as text
    assert core.forbid_uses(relu_through_alias, {"no_such_module.relu": "no"}) is None


# ---------------------------------------------------------------- fmt_shape, as_tensor
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (torch.zeros(2, 3, 8, 8), "(2, 3, 8, 8)"),
        (torch.tensor(1.5), "()"),
        (torch.zeros(0), "(0,)"),
        ([1, 2], "list"),
        (None, "NoneType"),
        (np.zeros((2, 2)), "ndarray"),
        (3, "int"),
    ],
)
def test_fmt_shape(value, text: str) -> None:
    assert core.fmt_shape(value) == text


def test_as_tensor_returns_the_tensor_itself() -> None:
    t = torch.arange(3)
    assert core.as_tensor(t, "x") is t


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, r"^conv\(x\) is None: did you forget to `return` the result\?$"),
        (np.ones(2), r"^conv\(x\) is a NumPy ndarray; return a torch\.Tensor \(torch\.as_tensor"),
        (np.float32(1.0), r"^conv\(x\) is a NumPy float32"),
        ([1.0, 2.0], r"^conv\(x\) should be a torch\.Tensor, got list\.$"),
        (2.5, r"got float\.$"),
    ],
)
def test_as_tensor_explains_other_values(value, match: str) -> None:
    with pytest.raises(CheckFailed, match=match):
        core.as_tensor(value, "conv(x)")


# ---------------------------------------------------------------- module helpers
def test_count_params_counts_all_parameters_once() -> None:
    lin = nn.Linear(3, 4)
    assert core.count_params(lin) == 3 * 4 + 4
    assert core.count_params(nn.BatchNorm2d(5)) == 10  # running statistics are buffers
    assert core.count_params(nn.Sequential(lin, nn.ReLU(), lin)) == 16  # shared: counted once
    frozen = nn.Conv2d(2, 3, 3).requires_grad_(False)
    assert core.count_params(frozen) == 2 * 3 * 9 + 3  # trainable or not
    assert core.count_params(nn.ReLU()) == 0


def test_expect_module_returns_instances() -> None:
    m = nn.Linear(2, 2)
    assert core.expect_module(m, "head") is m


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (nn.Linear, r"^head is the class Linear; return an instance \(call it with its arguments\)\.$"),
        (None, r"^head is None: did you forget to `return` the module\?$"),
        (torch.zeros(2), r"^head should be a torch\.nn\.Module, got Tensor\.$"),
        (lambda x: x, r"got function\.$"),
    ],
)
def test_expect_module_explains_other_values(value, match: str) -> None:
    with pytest.raises(CheckFailed, match=match):
        core.expect_module(value, "head")


def test_modules_of_finds_nested_modules_in_order() -> None:
    inner = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), inner, nn.Flatten(), nn.Linear(4, 2))
    assert core.modules_of(net, nn.Conv2d) == [net[0], inner[0]]
    assert core.modules_of(net, (nn.ReLU, nn.Linear)) == [inner[1], net[4]]
    assert core.modules_of(net, nn.Sequential) == [net, inner]  # itself included
    assert core.modules_of(net, nn.LayerNorm) == []


# ---------------------------------------------------------------- random_boxes (14.13 checks)
def _ctx(seed: int) -> core.Context:
    return core.Context(seed, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [20.0, 40.0])
def test_random_boxes_are_valid_xyxy_boxes(size: float) -> None:
    boxes = random_boxes(_ctx(0), 500, size)
    assert boxes.shape == (500, 4)
    assert boxes.dtype == torch.float64
    x1, y1, x2, y2 = boxes.unbind(1)
    for lo, hi in ((x1, x2), (y1, y2)):
        assert lo.min() >= 0  # top-left corner in the image
        assert lo.max() < 0.7 * size
        side = hi - lo
        assert side.min() >= 1.0  # at least one pixel wide
        assert side.max() < 0.4 * size + 1.0


def test_random_boxes_follow_the_context_seed() -> None:
    assert torch.equal(random_boxes(_ctx(7), 5), random_boxes(_ctx(7), 5))
    assert not torch.equal(random_boxes(_ctx(7), 5), random_boxes(_ctx(8), 5))
    ctx = _ctx(7)
    assert not torch.equal(random_boxes(ctx, 5), random_boxes(ctx, 5))  # the generator advances


def test_random_boxes_stay_inside_the_image() -> None:
    size = 20.0
    boxes = random_boxes(_ctx(0), 500, size)
    assert boxes.min() >= 0
    assert boxes.max() <= size


def test_preserved_state_names_structural_changes_instead_of_crashing() -> None:
    conv = nn.Conv2d(2, 2, 3, bias=False)
    with pytest.raises(CheckFailed, match="added or removed parameters"), core.preserved_state(conv):
        conv.bias = nn.Parameter(torch.zeros(2))
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(CheckFailed, match="added or removed layers"), core.preserved_state(net):
        net.append(nn.ReLU())
