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
from cnnbook.modules import count_parameters

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
    assert count_parameters(lin) == 3 * 4 + 4
    assert count_parameters(nn.BatchNorm2d(5)) == 10  # running statistics are buffers
    assert count_parameters(nn.Sequential(lin, nn.ReLU(), lin)) == 16  # shared: counted once
    frozen = nn.Conv2d(2, 3, 3).requires_grad_(False)
    assert count_parameters(frozen) == 2 * 3 * 9 + 3  # trainable or not
    assert count_parameters(nn.ReLU()) == 0


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


# ---------------------------------------------------------------- forbidden families
X = torch.randn(1, 1, 6, 7, generator=torch.Generator().manual_seed(0))
W = torch.randn(1, 1, 3, 2, generator=torch.Generator().manual_seed(1))
BOXES = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])


def _grad_input() -> torch.Tensor:
    return torch.tensor([1.0, -2.0, 3.0], requires_grad=True)


def _square_sum(v: torch.Tensor) -> torch.Tensor:
    return (v**2).sum()


def _autograd_grad() -> tuple[torch.Tensor, ...]:
    v = _grad_input()
    return torch.autograd.grad(_square_sum(v), [v])


def _conv_loops() -> torch.Tensor:  # a correct hand-written correlation
    kh, kw = W.shape[-2:]
    h, w = X.shape[-2] - kh + 1, X.shape[-1] - kw + 1
    return torch.stack(
        [torch.stack([(X[0, 0, i : i + kh, j : j + kw] * W[0, 0]).sum() for j in range(w)]) for i in range(h)]
    )


def _scipy_imported_inside() -> torch.Tensor:
    from scipy.signal import correlate2d  # imported in the body: the first run must fail too

    return torch.as_tensor(correlate2d(X[0, 0].numpy(), W[0, 0].numpy(), mode="valid"))


def _private_iou_helper() -> torch.Tensor:
    from torchvision.ops.boxes import _box_inter_union

    inter, union = _box_inter_union(BOXES, BOXES)
    return inter / union


def _caught_and_fallen_back() -> torch.Tensor:
    try:
        return F.conv2d(X, W)
    except Exception:  # the student swallows the error and returns something else
        return _conv_loops()


def _dual_numbers() -> torch.Tensor:
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        dual = fwad.make_dual(torch.tensor([1.0, 2.0]), torch.ones(2))
        return fwad.unpack_dual(_square_sum(dual)).tangent


FORBIDDEN_ROUTES = {
    # family, the student's code, what the message must name
    "conv3d of depth one": (
        core.FAMILY_CONV,
        lambda: F.conv3d(X[:, :, None], W[:, :, None])[:, :, 0],
        "aten.convolution",
    ),
    "conv1d per row": (
        core.FAMILY_CONV,
        lambda: F.conv1d(X[0, 0][:, None], W[0, 0][:1][None]),
        "aten.convolution",
    ),
    "transposed conv": (core.FAMILY_CONV, lambda: F.conv_transpose2d(X, W), "aten.convolution"),
    "torch.ops.aten": (
        core.FAMILY_CONV,
        lambda: torch.ops.aten.convolution(X, W, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
        "aten.convolution",
    ),
    "torch._C._nn": (core.FAMILY_CONV, lambda: torch._C._nn.thnn_conv2d(X, W, [3, 2]), "slow_conv2d"),
    "nn.Conv2d module": (core.FAMILY_CONV, lambda: nn.Conv2d(1, 1, (3, 2))(X), "aten.convolution"),
    "scipy imported inside": (core.FAMILY_CONV, _scipy_imported_inside, "scipy.signal"),
    "numpy.convolve": (
        core.FAMILY_CONV,
        lambda: torch.as_tensor(np.convolve([1.0, 2.0, 3.0], [1.0, 1.0])),
        "convolve",
    ),
    "cnnbook's own answer": (
        core.FAMILY_CONV,
        lambda: __import__("cnnbook.ops").ops.conv2d_loops(X, W),
        "cnnbook.ops",
    ),
    "caught and swallowed": (core.FAMILY_CONV, _caught_and_fallen_back, "aten.convolution"),
    "two max_pool1d passes": (
        core.FAMILY_POOL,
        lambda: F.max_pool1d(F.max_pool1d(X[0], 2).transpose(1, 2), 2),
        "max_pool2d_with_indices",
    ),
    "max_pool3d": (core.FAMILY_POOL, lambda: F.max_pool3d(X[None], (1, 2, 2))[0], "max_pool3d"),
    "lp_pool2d": (core.FAMILY_POOL, lambda: F.lp_pool2d(X, 2, 2), "avg_pool2d"),
    "adaptive max": (core.FAMILY_POOL, lambda: F.adaptive_max_pool2d(X, 3), "adaptive_max_pool2d"),
    "pool through aten": (core.FAMILY_POOL, lambda: torch.ops.aten.max_pool2d(X, [2, 2]), "max_pool2d"),
    "interpolate area": (
        core.FAMILY_POOL,
        lambda: F.interpolate(X, size=(3, 3), mode="area"),
        "adaptive_avg_pool",
    ),
    "F.unfold": (core.FAMILY_UNFOLD, lambda: F.unfold(X, 2), "aten.im2col"),
    "Tensor.unfold": (core.FAMILY_UNFOLD, lambda: X.unfold(2, 2, 2), "aten.unfold"),
    "box_iou": (core.FAMILY_IOU, lambda: __import__("torchvision").ops.box_iou(BOXES, BOXES), "box_iou"),
    "private IoU helper": (core.FAMILY_IOU, _private_iou_helper, "_box_inter_union"),
    "generalized IoU loss": (
        core.FAMILY_IOU,
        lambda: __import__("torchvision").ops.generalized_box_iou_loss(BOXES, BOXES),
        "generalized_box_iou",
    ),
    "nms operator": (
        core.FAMILY_NMS,
        lambda: torch.ops.torchvision.nms(BOXES, torch.tensor([0.9, 0.8]), 0.5),
        "torchvision.nms",
    ),
    "backward": (core.FAMILY_AUTODIFF, lambda: _square_sum(_grad_input()).backward(), "autograd.backward"),
    "autograd.grad": (core.FAMILY_AUTODIFF, _autograd_grad, "grad"),
    "func.grad": (core.FAMILY_AUTODIFF, lambda: torch.func.grad(_square_sum)(torch.ones(3)), "grad"),
    "func.jacfwd": (core.FAMILY_AUTODIFF, lambda: torch.func.jacfwd(_square_sum)(torch.ones(3)), "jacfwd"),
    "func.jvp": (
        core.FAMILY_AUTODIFF,
        lambda: torch.func.jvp(_square_sum, (torch.ones(3),), (torch.ones(3),)),
        "jvp",
    ),
    "functional.jacobian": (
        core.FAMILY_AUTODIFF,
        lambda: torch.autograd.functional.jacobian(_square_sum, torch.ones(3)),
        "jacobian",
    ),
    "dual numbers": (core.FAMILY_AUTODIFF, _dual_numbers, "dual"),
    "the engine itself": (
        core.FAMILY_AUTODIFF,
        lambda: torch.autograd.variable.Variable._execution_engine.run_backward(
            (_square_sum(_grad_input()),), (torch.tensor(1.0),), False, False, (), True, True
        ),
        "autograd engine",
    ),
}


@pytest.mark.parametrize("route", list(FORBIDDEN_ROUTES))
def test_forbidden_catches_every_route_into_the_family(route: str) -> None:
    family, answer, entry = FORBIDDEN_ROUTES[route]
    with pytest.raises(core.ForbiddenUse) as caught, core.forbidden(family):
        core.call(answer)
    message = str(caught.value)
    assert entry in message
    assert f"this exercise asks you to {family.task}" in message
    assert family.scope in message


@pytest.mark.parametrize("route", list(FORBIDDEN_ROUTES))
def test_forbidden_puts_everything_back(route: str) -> None:
    family, answer, _ = FORBIDDEN_ROUTES[route]
    with pytest.raises(core.ForbiddenUse), core.forbidden(family):
        core.call(answer)
    answer()  # every route works again after the block
    import builtins
    import importlib

    assert builtins.__import__.__module__ == "builtins"
    assert importlib.import_module.__module__ == "importlib"


def test_forbidden_names_the_requirement_and_the_students_line() -> None:
    def max_pool(x):
        return F.max_pool3d(x[None], (1, 2, 2))[0]

    with (
        pytest.raises(core.ForbiddenUse) as caught,
        core.forbidden(core.FAMILY_POOL, why="write the max pool yourself"),
    ):
        core.call(max_pool, X)
    assert str(caught.value).startswith(
        "max_pool calls `torch.ops.aten.max_pool3d_with_indices` "
        "(at `return F.max_pool3d(x[None], (1, 2, 2))[0]`): "
        "that pools for you, and this exercise asks you to write the max pool yourself;"
    )


@pytest.mark.parametrize(
    ("family", "answer"),
    [
        (core.FAMILY_CONV, _conv_loops),
        (
            core.FAMILY_CONV,
            lambda: torch.einsum("hwij,ij->hw", X[0, 0].unfold(0, 3, 1).unfold(1, 2, 1), W[0, 0]),
        ),
        (core.FAMILY_POOL, lambda: X.unfold(2, 2, 2).unfold(3, 2, 2).amax((-1, -2))),
        (core.FAMILY_POOL, lambda: torch.vmap(lambda r: r.unfold(0, 2, 2).amax(-1))(X[0, 0])),
        (core.FAMILY_UNFOLD, lambda: X[..., :2, :2].amax((-1, -2))),
        (core.FAMILY_IOU, lambda: (BOXES[:, 2:] - BOXES[:, :2]).prod(1)),
        (core.FAMILY_AUTODIFF, lambda: 2 * torch.tensor([1.0, 2.0])),
        (core.FAMILY_CONV, lambda: _square_sum(_grad_input()).backward()),  # other families stay usable
    ],
)
def test_forbidden_lets_hand_written_answers_through(family: core.Family, answer) -> None:
    with core.forbidden(family) as guard:
        core.call(answer)
    assert guard.reached == []


def test_forbidden_works_in_inference_mode_and_allowed_lets_the_checker_compute() -> None:
    with torch.inference_mode(), pytest.raises(core.ForbiddenUse), core.forbidden(core.FAMILY_POOL):
        core.call(lambda: F.avg_pool2d(X, 2))
    with core.forbidden(core.FAMILY_POOL, core.FAMILY_AUTODIFF) as guard:
        with core.allowed():  # the checker's own reference inside the block
            ref = F.max_pool2d(X, 2)
            _square_sum(_grad_input()).backward()
        assert guard.reached == []
        with pytest.raises(core.ForbiddenUse):  # blocked again after allowed()
            core.call(lambda: F.max_pool2d(X, 2))
        guard.reached.clear()  # (a use the student's code swallowed would fail here)
    assert ref.shape == (1, 1, 3, 3)


def test_forbidden_without_call_reports_the_same_message() -> None:
    with (
        pytest.raises(core.ForbiddenUse, match=r"^your code calls `torch\.ops\.aten\.convolution`"),
        core.forbidden(core.FAMILY_CONV),
    ):
        F.conv2d(X, W)


def test_judge_takes_families() -> None:
    cases = [core.Case((X, W), "x and w")]
    with pytest.raises(core.ForbiddenUse, match="write the correlation yourself"):
        core.judge(
            lambda x, w: F.conv3d(x[:, :, None], w[:, :, None])[:, :, 0],
            cases,
            reference=F.conv2d,
            compare=core.tensor_compare(),
            forbidden=core.FAMILY_CONV,
            why="write the correlation yourself",
        )
    core.judge(lambda x, w: F.conv2d(x, w), cases, reference=F.conv2d, compare=core.tensor_compare())


# ---------------------------------------------------------------- types and storage
@pytest.mark.parametrize("value", [7, np.int64(7), torch.tensor(7).item()])
def test_expect_int_accepts_integers(value) -> None:
    got = core.expect_int(value, "n")
    assert got == 7
    assert type(got) is int


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (1070794.0, r"return an int, not 1070794\.0 \(use integer arithmetic: `//`"),
        (np.float64(196.0), r"got the float64 196\.0: return an int, not 196\.0"),
        (2.5, r"return an int, not 2\.5\.$"),
        (torch.tensor(196), r"got a tensor \(196\)"),
        (torch.tensor(196.0), r"got a tensor \(196\.0\)"),
        (True, r"should be an int \(a count\), got True"),
        (None, r"forget to `return`"),
        ("196", r"got str"),
    ],
)
def test_expect_int_rejects_other_types(value, match: str) -> None:
    with pytest.raises(CheckFailed, match=match):
        core.expect_int(value, "n")


def _conv_from_linear(lin: nn.Linear, copy: bool) -> nn.Conv2d:
    conv = nn.Conv2d(lin.in_features, lin.out_features, 1)
    weight = lin.weight.view(lin.out_features, lin.in_features, 1, 1)
    conv.weight = nn.Parameter(weight.detach().clone() if copy else weight.detach())
    conv.bias = nn.Parameter(lin.bias.detach().clone())
    return conv


def test_expect_no_shared_storage() -> None:
    lin = nn.Linear(3, 2)
    core.expect_no_shared_storage(_conv_from_linear(lin, copy=True), lin, "conv")
    with pytest.raises(CheckFailed, match=r"conv\.weight shares memory with the original module's `weight`"):
        core.expect_no_shared_storage(_conv_from_linear(lin, copy=False), lin, "conv")
    shared_bias = _conv_from_linear(lin, copy=True)
    shared_bias.bias = lin.bias  # the very same Parameter
    with pytest.raises(CheckFailed, match=r"conv\.bias shares memory .* `bias`"):
        core.expect_no_shared_storage(shared_bias, lin, "conv")


def test_expect_detached() -> None:
    x = torch.ones(2, requires_grad=True)
    core.expect_detached((x * 2).detach(), "saliency")
    core.expect_detached({"a": torch.ones(1), "b": [1, "s"]}, "out")
    with pytest.raises(
        CheckFailed, match=r"saliency is still attached to the autograd graph \(MulBackward0\)"
    ):
        core.expect_detached(x * 2, "saliency")
    with pytest.raises(CheckFailed, match=r"out\['maps'\]\[1\] is still attached .*requires_grad=True"):
        core.expect_detached({"maps": [torch.ones(1), x]}, "out")


# ---------------------------------------------------------------- side effects on the caller
def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
    )


def _forward_in_eval(model: nn.Module, restore: str) -> torch.Tensor:
    was = model.training
    modes = [m.training for m in model.modules()]
    model.eval()
    with torch.no_grad():
        out = model(torch.ones(1, 1, 6, 6))
    if restore == "top":
        model.train(was)  # wakes the frozen batch norm
    elif restore == "each":
        for m, mode in zip(model.modules(), modes, strict=True):
            m.training = mode
    return out


def test_preserved_state_accepts_code_that_restores_every_submodule() -> None:
    model = _model()
    with core.preserved_state(model, reveal=True):
        _forward_in_eval(model, "each")
    # the caller's own state comes back: all in train mode, no gradients
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("side_effect", "match"),
    [
        (
            lambda m: _forward_in_eval(m, "top"),
            r"put `1` \(BatchNorm2d\) in train mode although it was in eval mode",
        ),
        (lambda m: _forward_in_eval(m, "none"), r"left the model in eval mode; it was in train mode before"),
        (
            lambda m: m.zero_grad(),
            r"wiped the gradients the caller had accumulated on `0\.weight`, `0\.bias`",
        ),
        (
            lambda m: m(torch.ones(1, 1, 6, 6)).sum().backward(),
            r"changed the gradients the caller had accumulated",
        ),
        (lambda m: torch.set_grad_enabled(False), r"gradients were left off globally"),
    ],
)
def test_preserved_state_reveals_side_effects(side_effect, match: str) -> None:
    model = _model()
    with pytest.raises(CheckFailed, match=match), core.preserved_state(model, reveal=True, what="freeze"):
        side_effect(model)
    assert torch.is_grad_enabled()
    assert all(m.training for m in model.modules())  # the caller's state is put back
    assert all(p.grad is None for p in model.parameters())


def test_preserved_state_weights_and_private_rng() -> None:
    model = _model()
    with (
        pytest.raises(CheckFailed, match=r"changed the model's weights or buffers \(`1\.running_mean`"),
        core.preserved_state(model, weights=True),
    ):
        model.train()(torch.ones(2, 1, 6, 6))  # a train-mode forward updates running stats
    import random

    for draw, name in [
        (lambda: torch.manual_seed(0), "torch"),
        (lambda: torch.rand(1), "torch"),
        (lambda: random.random(), "Python's random"),
        (lambda: np.random.rand(), "NumPy's"),
    ]:
        state = torch.get_rng_state()
        with (
            pytest.raises(CheckFailed, match=f"reseeded or drew from the global {name}"),
            core.preserved_state(private_rng=True),
        ):
            draw()
        assert torch.equal(torch.get_rng_state(), state)  # put back
    with core.preserved_state(private_rng=True):
        torch.rand(3, generator=torch.Generator().manual_seed(1))


def test_preserved_state_names_structural_changes_instead_of_crashing() -> None:
    conv = nn.Conv2d(2, 2, 3, bias=False)
    with pytest.raises(CheckFailed, match="added or removed parameters"), core.preserved_state(conv):
        conv.bias = nn.Parameter(torch.zeros(2))
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(CheckFailed, match="added or removed layers"), core.preserved_state(net):
        net.append(nn.ReLU())


# ---------------------------------------------------------------- feedback that teaches
@core.checker("double", requirement="return twice the input, element by element")
def _check_double(ctx: core.Context, fn) -> str:
    cases = [core.Case((ctx.randn(n),), f"x of shape ({n},)") for n in (9, 5, 1, 3)]
    core.judge(
        fn,
        cases,
        reference=lambda x: 2 * x,
        compare=core.tensor_compare(),
        mistakes=[("you squared x.", lambda x: x * x, "Multiplication by a constant, not by x itself.")],
        hint="compare your output with 2 * x on the smallest case.",
        hint2="every element is multiplied by the same number",
    )
    return "doubles"


def test_judge_reports_the_smallest_failing_case_and_the_requirement(capsys) -> None:
    result = _check_double(lambda x: x + 1, seed=0, raise_on_fail=False)
    assert not result
    assert "x of shape (1,)" in result.message.splitlines()[0]  # the smallest failing input
    assert "Next step: compare your output with 2 * x" in result.message
    assert "   Requirement: return twice the input, element by element" in result.message
    assert "hint(2)" in result.message
    assert "every element is multiplied" not in result.message
    assert "every element is multiplied by the same number" in core.hint(2)
    assert "the requirement is: return twice the input" in core.hint(1)


def test_second_hint_with_hints_2_and_mistake_hints() -> None:
    result = _check_double(lambda x: x * x, seed=0, raise_on_fail=False, hints=2)
    assert "Likely mistake: you squared x." in result.message
    assert "💡 A further hint: Multiplication by a constant, not by x itself." in result.message
    assert core.hint(2).endswith("Multiplication by a constant, not by x itself.")
    assert _check_double(lambda x: x + x, seed=0)  # and a right answer passes


def test_case_size_defaults_to_the_number_of_elements() -> None:
    assert core.Case((torch.zeros(2, 3), 4), "a").reading_size() == 7
    assert core.Case((torch.zeros(2, 3),), "a", size=1).reading_size() == 1


def test_corpus_rejected_can_require_the_requirement_line() -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "corpus_tools", Path(__file__).parent / "corpus" / "corpus_tools.py"
    )
    assert spec is not None
    assert spec.loader is not None
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    tools.rejected(
        _check_double, lambda x: x * x, hint="squared", requirement="twice the input", seeds=range(2)
    )
    with pytest.raises(AssertionError, match="names no requirement"):
        tools.rejected(
            _check_double, lambda x: x * x, hint="squared", requirement="three times", seeds=range(1)
        )


def test_a_failed_check_shows_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """In Jupyter a failing check shows its ❌ message and one line, no frames from the checker."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("from cnnbook.checks.core import CheckFailed\nraise CheckFailed('expected 3, got 4')")
    finally:
        InteractiveShell.clear_instance()
    out = capsys.readouterr().out
    assert "did not pass" in out
    assert "Traceback" not in out
    assert "core.py" not in out


def test_a_passed_check_result_displays_nothing_more() -> None:
    """The ✅ line is printed by the check; Jupyter shows nothing for the returned result."""
    from IPython.core.formatters import DisplayFormatter

    result = core.CheckResult("max pooling", passed=True, message="✅ Correct", seed=0)
    data, _ = DisplayFormatter().format(result)
    assert data == {}


def _freeze_conv(model: nn.Module) -> None:
    model[0].requires_grad_(False)


def test_preserved_state_flags_false_lets_a_freezing_exercise_change_requires_grad() -> None:
    model = _model()
    model[4].requires_grad_(False)  # arrives partly frozen: the frozen layer gets gradients too
    seen: list[bool] = []
    with core.preserved_state(model, reveal=True, flags=False, weights=True):
        seen = [p.grad is not None for p in model.parameters()]
        _freeze_conv(model)
        model[4].requires_grad_(True)
    assert all(seen)
    # the answer's requires_grad changes are left for the checker; everything else is put back
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True, True, True]
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(CheckFailed, match="changed `requires_grad`"), core.preserved_state(model):
        model.requires_grad_(True)  # the default still catches it


@pytest.mark.parametrize(
    ("side_effect", "match"),
    [
        (lambda m: (_freeze_conv(m), m.zero_grad()), r"wiped the gradients .* on `0\.weight`"),
        (lambda m: (_freeze_conv(m), m.eval()), r"left the model in eval mode"),
        (lambda m: (_freeze_conv(m), m.train()), r"put `1` \(BatchNorm2d\) in train mode"),
        (lambda m: (_freeze_conv(m), torch.set_grad_enabled(False)), r"left off globally"),
        (lambda m: (_freeze_conv(m), m[4].reset_parameters()), r"weights or buffers \(`4\.weight`"),
    ],
)
def test_preserved_state_flags_false_still_checks_everything_else(side_effect, match: str) -> None:
    model = _model()
    with (
        pytest.raises(CheckFailed, match=match) as failed,
        core.preserved_state(
            model, reveal=True, flags=False, weights=True, requirement="freeze only", hint2="deeper"
        ),
    ):
        side_effect(model)
    assert (failed.value.requirement, failed.value.hint2) == ("freeze only", "deeper")
    assert torch.is_grad_enabled()
    assert not model[0].weight.requires_grad  # not put back: the checker inspects it


def test_preserved_state_modes_false_leaves_the_modes_to_the_checker() -> None:
    model = _model()  # all in train mode; reveal must not freeze the batch norm for the answer
    with core.preserved_state(model, reveal=True, flags=False, modes=False):
        assert model[1].training
        model[1].eval()
        model[1].requires_grad_(False)
    assert not model[1].training  # the answer's modes are kept
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    with (
        pytest.raises(CheckFailed, match="wiped the gradients"),
        core.preserved_state(model, reveal=True, flags=False, modes=False),
    ):
        model.zero_grad()


def test_preserved_state_hooks_false_allows_a_hook_the_answer_keeps() -> None:
    model = _model()
    with core.preserved_state(model, reveal=True, flags=False, modes=False, hooks=False):
        model[1].register_forward_pre_hook(lambda m, _inputs: None)
    with pytest.raises(CheckFailed, match=r"left 1 hook\(s\) registered"), core.preserved_state(model):
        model[1].register_forward_pre_hook(lambda m, _inputs: None)


def test_a_mistake_without_its_own_deeper_hint_gets_the_judge_level_one() -> None:
    def run(mistakes: list) -> CheckFailed:
        cases = [core.Case((torch.arange(1.0, 4.0),), "x of shape (3,)")]
        with pytest.raises(CheckFailed) as failed:
            core.judge(
                lambda x: x * x,
                cases,
                reference=lambda x: 2 * x,
                compare=core.tensor_compare(),
                mistakes=mistakes,
                hint2="judge-level deeper hint",
            )
        return failed.value

    plain = run([("you squared x.", lambda x: x * x)])
    assert "Likely mistake: you squared x." in str(plain)
    assert plain.hint2 == "judge-level deeper hint"
    own = run([("you squared x.", lambda x: x * x, "its own deeper hint")])
    assert own.hint2 == "its own deeper hint"


def test_deeper_hint_adds_a_second_hint_without_replacing_one() -> None:
    with pytest.raises(CheckFailed) as failed, core.deeper_hint("added"):
        core.fail("wrong")
    assert failed.value.hint2 == "added"
    with pytest.raises(CheckFailed) as failed, core.deeper_hint("added"):
        core.fail("wrong", hint2="own")
    assert failed.value.hint2 == "own"


class _ScalesItsWeightInForward(nn.Module):
    """A student's layer that updates its own weight in place after using it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        with torch.no_grad():
            self.conv.weight.mul_(0.5)
        return y


def test_expect_same_module_names_an_inplace_weight_change_instead_of_crashing() -> None:
    torch.manual_seed(0)
    with pytest.raises(CheckFailed, match="changes a tensor in place") as failed:
        core.expect_same_module(
            _ScalesItsWeightInForward(),
            nn.Conv2d(2, 3, 3, padding=1),
            [torch.randn(1, 2, 5, 5)],
            "your layer",
        )
    assert "modified by an inplace operation" in str(failed.value)  # autograd's own words, quoted
    assert "w.mul_(2)" in failed.value.hint2


def test_expect_number_reads_a_prediction() -> None:
    from fractions import Fraction

    assert core.expect_number(Fraction(1, 4), "p") == 0.25
    assert core.expect_number(np.float32(0.5), "p") == 0.5
    assert core.expect_number(torch.tensor(2), "p") == 2.0
    with pytest.raises(CheckFailed, match="still None"):
        core.expect_number(None, "p")
    for text in ("0.25", True):
        with pytest.raises(CheckFailed, match="should be a number"):
            core.expect_number(text, "p")


def test_count_by_hand_blocks_layers_and_counting_helpers() -> None:
    from cnnbook.models import mobile

    def built(c: int, k: int) -> int:
        return count_parameters(nn.Conv2d(c, c, k, bias=False))

    def helper(c: int, k: int) -> int:
        return mobile.standard_conv_params(c, c, k)

    for fn, match in ((built, "building layers|nn.Module"), (helper, "counts the parameters for you")):
        with (
            pytest.raises(core.ForbiddenUse, match=match),
            core.forbidden(*core.count_by_hand(), why="count"),
        ):
            core.call(fn, 4, 3)
    with core.forbidden(*core.count_by_hand(), why="count"):
        assert core.call(lambda c, k: c * c * k * k, 4, 3) == 144


def test_expect_answers_wants_every_key_answered() -> None:
    keys = ["a", "b"]
    assert core.expect_answers({"a": 1, "b": 2, "extra": 3}, keys, "predicted")["b"] == 2
    assert core.expect_answers({"a": None, "b": 2}, keys, "chosen", none_allowed=True)["a"] is None
    for answers, match in (
        ([1, 2], r"predicted: give a dict with the keys \['a', 'b'\], got list"),
        ({"a": 1}, r"missing \['b'\]"),
        ({"a": 1, "b": ...}, r"replace every \.\.\."),
        ({"a": None, "b": 2}, r"replace every \.\.\."),
    ):
        with pytest.raises(CheckFailed, match=match):
            core.expect_answers(answers, keys, "predicted")


def test_forbidden_gives_its_second_hint_on_every_route() -> None:
    """``forbidden(hint2=)``: through call(), a direct use, and a use the student's code caught."""
    from cnnbook.checks.core import FAMILY_POOL, ForbiddenUse, call, forbidden

    def direct(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.max_pool2d(x, 2)

    def caught(x: torch.Tensor) -> torch.Tensor:
        try:
            return torch.nn.functional.max_pool2d(x, 2)
        except Exception:
            return x[..., ::2, ::2]

    x = torch.randn(1, 1, 4, 4)
    for run in (
        lambda: call(direct, x, describe="pool(x)"),
        lambda: direct(x),
        lambda: call(caught, x, describe="pool(x)"),
    ):
        with (
            pytest.raises(ForbiddenUse) as info,
            forbidden(FAMILY_POOL, why="write it yourself", hint2="index the windows yourself"),
        ):
            run()
        assert info.value.hint2 == "index the windows yourself"
        assert "pool" in str(info.value)
