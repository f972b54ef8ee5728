"""The checker framework behind every exercise notebook (all sections).

A checker runs a student's answer on fresh random inputs, compares it with a reference and
prints one line:

* ``✅ Correct: ...`` and returns a truthy :class:`CheckResult`;
* ``❌ ...`` with what was expected and what came back, then raises :class:`CheckFailed` (an
  ``AssertionError``, so a broken *solution* notebook fails in CI);
* ``⏳ ... is not implemented yet`` and re-raises ``NotImplementedError`` while the answer is
  still the ``raise NotImplementedError()`` placeholder.

Checkers are plain functions decorated with :func:`checker`. Inside, they call the student's
code through :func:`call` (which turns the student's exceptions into helpful messages), compare
with :func:`expect_tensor` / :func:`expect_equal` (which recognise known mistakes from a table of
"wrong answers" and name them), and can forbid the one library function an exercise asks the
student to write, both in the source and at run time (:func:`forbid`). Checkers that try a
list of edge cases run them through :func:`judge` (one :class:`Case` per input).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import math
import secrets
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar, overload

import torch


class CheckFailed(AssertionError):
    """A student's answer disagreed with the reference; the message says how."""


class ForbiddenCall(Exception):
    """Raised by a patched library function that an exercise asks the student to write."""

    def __init__(self, target: str, why: str = "") -> None:
        super().__init__(target)
        self.target = target
        self.why = why


class _NotDone(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check; truthy when the answer passed.

    Attributes:
        name: What was checked.
        passed: Whether the answer matched the reference.
        message: The line that was printed.
        seed: Seed of the random inputs (pass ``seed=`` to the checker to reproduce).
    """

    name: str
    passed: bool
    message: str
    seed: int

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"CheckResult({self.name!r}, passed={self.passed})"


@dataclass
class Context:
    """What a checker body receives: a seeded generator for its random inputs.

    Attributes:
        seed: The seed.
        gen: A ``torch.Generator`` seeded with ``seed``; use it for every random tensor.
    """

    seed: int
    gen: torch.Generator

    def randn(self, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Standard normal tensor of ``shape`` from this check's generator."""
        return torch.randn(*shape, generator=self.gen, dtype=dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Uniform ``[0, 1)`` tensor of ``shape`` from this check's generator."""
        return torch.rand(*shape, generator=self.gen, dtype=dtype)

    def randint(self, low: int, high: int) -> int:
        """A random integer in ``[low, high]`` (both ends included)."""
        return int(torch.randint(low, high + 1, (1,), generator=self.gen))

    def choice(self, options: Sequence[Any]) -> Any:
        """One element of ``options`` picked at random."""
        return options[self.randint(0, len(options) - 1)]


def _name_of(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def checker(title: str) -> Callable[[Callable[..., str]], Callable[..., CheckResult]]:
    """Turn ``body(ctx, *args)`` into a user-facing check function.

    The decorated function takes the student's answer(s) plus keyword-only ``seed`` (``None``
    draws a fresh one) and ``raise_on_fail`` (``True``: a wrong answer raises
    :class:`CheckFailed`; ``False``: it returns a falsy :class:`CheckResult`).

    Args:
        title: Short name of what is checked, used in the printed line.

    Returns:
        A decorator.
    """

    def decorate(body: Callable[..., str]) -> Callable[..., CheckResult]:
        @functools.wraps(body)
        def run(*answers: Any, seed: int | None = None, raise_on_fail: bool = True) -> CheckResult:
            __tracebackhide__ = True  # pytest and IPython hide this frame
            seed = secrets.randbelow(2**31) if seed is None else int(seed)
            gen = torch.Generator().manual_seed(seed)
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    praise = body(Context(seed, gen), *answers)
            except _NotDone as exc:
                msg = (
                    f"⏳ {exc.name} is not implemented yet: replace `raise NotImplementedError()` "
                    f"with your answer, run that cell, then run this check again."
                )
                print(msg)
                raise NotImplementedError(msg) from None
            except CheckFailed as exc:
                msg = (
                    f"❌ {title}: {exc}\n   (random inputs from seed={seed}; pass seed={seed} to "
                    f"this check to reproduce them)"
                )
                print(msg)
                if raise_on_fail:
                    raise CheckFailed(msg) from None
                return CheckResult(title, False, msg, seed)
            msg = f"✅ Correct: {praise}"
            print(msg)
            return CheckResult(title, True, msg, seed)

        return run

    return decorate


def fail(message: str) -> NoReturn:
    """Abort the running check with ``message`` (expected vs got, and a hint)."""
    raise CheckFailed(message)


def call(fn: Callable[..., Any], *args: Any, describe: str = "", **kwargs: Any) -> Any:
    """Call the student's ``fn``, translating its exceptions into check messages.

    Args:
        fn: The student's function or class.
        *args: Positional arguments.
        describe: How to describe the arguments in a message (e.g. ``"x of shape (2, 3, 8, 8)"``).
        **kwargs: Keyword arguments.

    Returns:
        Whatever ``fn`` returns.

    Raises:
        CheckFailed: If ``fn`` raised, or called a function the exercise forbids.
    """
    __tracebackhide__ = True
    name = _name_of(fn)
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        inner = tb.tb_frame.f_code.co_name if tb is not None else name
        raise _NotDone(
            name if inner in (name, "__init__", "forward", "<module>") else f"{inner} (called by {name})"
        ) from None
    except ForbiddenCall as exc:
        why = exc.why or "this exercise asks you to compute that yourself."
        raise CheckFailed(f"{name} calls `{exc.target}`: {why}") from None
    except (CheckFailed, _NotDone):
        raise
    except Exception as exc:  # any error in student code becomes a hint
        on = f" on {describe}" if describe else ""
        raise CheckFailed(f"{name} raised {type(exc).__name__}{on}: {exc}") from None


def _resolve(target: str) -> tuple[Any, str] | None:
    """``(owner, attribute)`` for a dotted path, looked up among already imported modules only.

    Nothing is imported: a library the student has not imported cannot have been called (an
    import inside the answer itself is caught by the source scan, which also compares dotted
    names as text), and importing e.g. scipy or torchvision here would slow every check down.
    """
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        obj: Any = sys.modules.get(".".join(parts[:cut]))
        if obj is None:
            continue
        for attr in parts[cut:-1]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return (obj, parts[-1]) if hasattr(obj, parts[-1]) else None
    return None


@contextmanager
def forbid(obj: Any, targets: Mapping[str, str]) -> Iterator[None]:
    """Forbid library shortcuts: in ``obj``'s source now, and at run time inside the block.

    First :func:`forbid_uses` scans the source of the student's ``obj``; then, while the block
    runs, each target is replaced by a stub raising :class:`ForbiddenCall` (which :func:`call`
    reports), catching calls made through helpers or aliases the scan cannot see. Paths that do
    not exist in the installed versions are skipped.

    Args:
        obj: The student's function or class.
        targets: Dotted path (``"torch.nn.functional.conv2d"``) -> why it is not allowed here.
    """
    forbid_uses(obj, targets)
    saved = []
    for target, why in targets.items():
        found = _resolve(target)
        if found is None:
            continue
        owner, attr = found

        def blocked(*_a: Any, _t: str = target, _w: str = why, **_k: Any) -> Any:
            raise ForbiddenCall(_t, _w)

        saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, blocked)
    try:
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


@contextmanager
def guard(target: str, veto: Callable[..., str | None]) -> Iterator[None]:
    """Let a library function run only with arguments that ``veto`` accepts.

    While the block runs, calling ``target`` first calls ``veto(*args, **kwargs)``; a returned
    message raises :class:`ForbiddenCall` with that message, ``None`` lets the call through.
    Used when an exercise may call e.g. ``F.conv2d`` but not with ``stride=``.

    Args:
        target: Dotted path of the function.
        veto: Returns why the call is not allowed, or ``None``.
    """
    found = _resolve(target)
    if found is None:
        yield
        return
    owner, attr = found
    original = getattr(owner, attr)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        why = veto(*args, **kwargs)
        if why:
            raise ForbiddenCall(target, why)
        return original(*args, **kwargs)

    setattr(owner, attr, guarded)
    try:
        yield
    finally:
        setattr(owner, attr, original)


def _source_tree(obj: Any) -> ast.AST | None:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None


def _namespace(obj: Any) -> dict[str, Any]:
    """The global namespace ``obj``'s source is resolved in (a notebook's user namespace)."""
    if hasattr(obj, "__globals__"):
        ns = dict(obj.__globals__)
        cells = getattr(obj, "__closure__", None) or ()
        for name, cell in zip(obj.__code__.co_freevars, cells, strict=False):
            with suppress(ValueError):  # an empty cell
                ns[name] = cell.cell_contents
        return ns
    if isinstance(obj, type):
        for attr in vars(obj).values():
            if hasattr(attr, "__globals__"):
                return attr.__globals__
        module = sys.modules.get(obj.__module__)
        return vars(module) if module else {}
    return {}


def _resolved_uses(obj: Any) -> list[tuple[str, Any]]:
    """``(text, object)`` for every name and dotted attribute chain in ``obj``'s source."""
    tree = _source_tree(obj)
    if tree is None:
        return []
    ns = _namespace(obj)
    builtins_ns = vars(__import__("builtins"))
    uses: list[tuple[str, Any]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:  # imports inside the body
            mod = sys.modules.get(node.module)
            uses.extend((f"{node.module}.{a.name}", getattr(mod, a.name, _MISSING)) for a in node.names)
            continue
        if not isinstance(node, (ast.Name, ast.Attribute)):
            continue
        chain: list[str] = []
        cur: ast.AST = node
        while isinstance(cur, ast.Attribute):
            chain.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name):
            continue
        target = ns.get(cur.id, builtins_ns.get(cur.id, _MISSING))
        for attr in reversed(chain):
            target = _MISSING if target is _MISSING else getattr(target, attr, _MISSING)
        uses.append((".".join([cur.id, *reversed(chain)]), target))
    return uses


_MISSING = object()


def forbid_uses(obj: Any, targets: Mapping[str, str]) -> None:
    """Fail if ``obj``'s source refers to one of the library objects in ``targets``.

    Names are resolved in ``obj``'s own namespace, so ``F.conv2d``, ``torch.nn.functional.conv2d``
    and ``from torch.nn.functional import conv2d as c; c(...)`` are all caught, while a
    student's own function that happens to be called ``conv2d`` is not. Sources that cannot be
    read are skipped (the run-time :func:`forbid` still applies).

    Args:
        obj: The student's function or class.
        targets: Dotted path of a forbidden object -> why it is not allowed here.
    """
    forbidden: dict[int, tuple[str, str]] = {}
    for path, why in targets.items():
        found = _resolve(path)
        if found is not None:
            forbidden.setdefault(id(getattr(*found)), (path, why))
    own = id(obj)
    if own in forbidden:
        path, why = forbidden[own]
        fail(f"you passed `{path}` itself: {why}")
    for text, target in _resolved_uses(obj):
        if text in targets:  # a full dotted path, e.g. from an import inside the answer
            fail(f"{_name_of(obj)} uses `{text}`: {targets[text]}")
        if target is _MISSING or id(target) == own:
            continue
        hit = forbidden.get(id(target))
        if hit is not None:
            fail(f"{_name_of(obj)} uses `{text}` ({hit[0]}): {hit[1]}")


def fmt_shape(t: Any) -> str:
    """``(2, 3, 8, 8)`` for a tensor, or the type name for anything else."""
    if isinstance(t, torch.Tensor):
        return str(tuple(t.shape))
    return type(t).__name__


def _short(t: torch.Tensor, limit: int = 16) -> str:
    flat = t.detach().flatten()
    vals = ", ".join(f"{v:.4g}" for v in flat[:limit].tolist())
    return f"[{vals}{', ...' if flat.numel() > limit else ''}]"


def tensors_close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    """Same shape and ``allclose`` (in float64, on the CPU, NaNs equal)."""
    if a.shape != b.shape:
        return False
    return bool(
        torch.allclose(
            a.detach().to(torch.float64).cpu(),
            b.detach().to(torch.float64).cpu(),
            atol=atol,
            rtol=rtol,
            equal_nan=True,
        )
    )


def as_tensor(got: Any, what: str) -> torch.Tensor:
    """Return ``got`` if it is a tensor; fail with advice for arrays, lists, ``None``."""
    if isinstance(got, torch.Tensor):
        return got
    if got is None:
        fail(f"{what} is None: did you forget to `return` the result?")
    if type(got).__module__.startswith("numpy"):
        fail(
            f"{what} is a NumPy {type(got).__name__}; return a torch.Tensor "
            f"(torch.as_tensor(...) converts one)."
        )
    fail(f"{what} should be a torch.Tensor, got {type(got).__name__}.")
    raise AssertionError  # unreachable; keeps type checkers happy


def expect_tensor(
    got: Any,
    expected: torch.Tensor,
    what: str,
    *,
    wrong: Mapping[str, torch.Tensor | Callable[[], torch.Tensor]] | None = None,
    shape_hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> torch.Tensor:
    """Compare a tensor answer with the reference.

    Args:
        got: The student's value.
        expected: The reference value.
        what: How to name the value in messages (``"conv2d(x, w)"``).
        wrong: Known mistakes: a hint -> the (lazily computed) value that mistake produces. If
            ``got`` equals one of them, the hint is the message.
        shape_hint: Advice appended to a shape mismatch.
        atol: Absolute tolerance.
        rtol: Relative tolerance.

    Returns:
        ``got`` as a tensor.

    Raises:
        CheckFailed: On a type, shape or value mismatch.
    """
    t = as_tensor(got, what)
    wrong = dict(wrong or {})
    if tuple(t.shape) != tuple(expected.shape):
        for hint, value in wrong.items():
            value = value() if callable(value) else value
            if tuple(value.shape) == tuple(t.shape) and tensors_close(t, value, atol, rtol):
                fail(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(t.shape)}. {hint}")
        fail(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(t.shape)}. {shape_hint}".rstrip())
    if not torch.isfinite(t).all() and torch.isfinite(expected).all():
        fail(f"{what} contains NaN or inf values; expected finite values such as {_short(expected, 6)}.")
    if tensors_close(t, expected, atol, rtol):
        return t
    for hint, value in wrong.items():
        value = value() if callable(value) else value
        if tensors_close(t, value, atol, rtol):
            fail(f"{what} has the right shape but wrong values. {hint}")
    diff = (t.detach().to(torch.float64) - expected.detach().to(torch.float64)).abs()
    idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.numel() else ()
    detail = (
        f"largest difference at index {idx}: expected {expected[idx].item():.5g}, got {t[idx].item():.5g}"
        if idx or diff.numel() == 1
        else ""
    )
    fail(
        f"{what} has the right shape {tuple(t.shape)} but wrong values; {detail}. "
        f"Expected starts {_short(expected)}, got {_short(t)}."
    )
    return t


def expect_equal(
    got: Any,
    expected: Any,
    what: str,
    *,
    wrong: Mapping[str, Any] | None = None,
    hint: str = "",
    rel: float = 0.0,
) -> Any:
    """Compare a plain value (int, float, tuple, str, ...) with the reference.

    Args:
        got: The student's value.
        expected: The reference value.
        what: How to name the value in messages.
        wrong: Known mistakes: hint -> the value that mistake produces.
        hint: Advice appended when the mistake is not recognised.
        rel: Relative tolerance for floats (0 means exact).

    Returns:
        ``got``.
    """

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, torch.Tensor) and a.numel() == 1:
            a = a.item()
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12 if rel else 0.0)
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == b

    if got is None and expected is not None:
        fail(f"{what} is None: did you forget to `return` the result?")
    if same(got, expected):
        return got
    for mistake, value in (wrong or {}).items():
        if same(got, value):
            fail(f"{what}: expected {expected!r}, got {got!r}. {mistake}")
    fail(f"{what}: expected {expected!r}, got {got!r}. {hint}".rstrip())
    return got


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters of ``module`` (all of them, trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def expect_module(got: Any, what: str) -> torch.nn.Module:
    """Fail unless ``got`` is an ``nn.Module``."""
    if not isinstance(got, torch.nn.Module):
        if isinstance(got, type) and issubclass(got, torch.nn.Module):
            fail(f"{what} is the class {got.__name__}; return an instance (call it with its arguments).")
        if got is None:
            fail(f"{what} is None: did you forget to `return` the module?")
        fail(f"{what} should be a torch.nn.Module, got {type(got).__name__}.")
    return got


M = TypeVar("M", bound=torch.nn.Module)


@overload
def modules_of(module: torch.nn.Module, kind: type[M]) -> list[M]: ...
@overload
def modules_of(module: torch.nn.Module, kind: tuple[type, ...]) -> list[torch.nn.Module]: ...
def modules_of(module: torch.nn.Module, kind: type | tuple[type, ...]) -> list[Any]:
    """All submodules of ``module`` (itself included) that are instances of ``kind``."""
    return [m for m in module.modules() if isinstance(m, kind)]


# ------------------------------------------------------------------ behaviour and global state


def _hook_count(module: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in module.modules()
    )


@contextmanager
def preserved_state(*modules: torch.nn.Module, what: str = "your code") -> Iterator[None]:
    """Fail if the block changes global state the student should leave as it was.

    Checks, after the block (also when it raised): the grad mode, each module's train/eval
    flags, every parameter's ``requires_grad`` and the number of hooks registered on the
    modules. Whatever changed is put back before failing, so one wrong answer does not break
    the student's later cells.

    Args:
        *modules: Modules whose state must come back unchanged.
        what: How to name the student's code in the message.

    Raises:
        CheckFailed: Naming each piece of state that changed.
    """
    grad = torch.is_grad_enabled()
    modes = [[m.training for m in mod.modules()] for mod in modules]
    flags = [[p.requires_grad for p in mod.parameters()] for mod in modules]
    hooks = [_hook_count(mod) for mod in modules]
    raised: BaseException | None = None
    try:
        yield
    except BaseException as exc:  # re-raised below after the state check
        raised = exc
    problems: list[str] = []
    if torch.is_grad_enabled() != grad:
        torch.set_grad_enabled(grad)
        problems.append(
            f"gradients were left {'off' if grad else 'on'} globally after {what} "
            f"{'raised' if raised else 'returned'} (use `with torch.no_grad():` "
            f"so they come back on by themselves)"
        )
    for mod, before, req, n in zip(modules, modes, flags, hooks, strict=True):
        after = [m.training for m in mod.modules()]
        if len(after) != len(before):
            problems.append(
                f"{what} added or removed layers of the model ({len(before)} modules "
                f"before, {len(after)} after); leave its structure as it is"
            )
        elif after != before:
            for m, was in zip(mod.modules(), before, strict=True):
                m.training = was
            problems.append(
                f"{what} left the model in {'train' if after[0] else 'eval'} mode; it "
                f"was in {'train' if before[0] else 'eval'} mode before (restore it)"
            )
        now = [p.requires_grad for p in mod.parameters()]
        if len(now) != len(req):
            problems.append(
                f"{what} added or removed parameters of the model ({len(req)} before, "
                f"{len(now)} after), e.g. gave a layer a bias it did not have"
            )
        elif now != req:
            for p, was in zip(mod.parameters(), req, strict=True):
                p.requires_grad_(was)
            problems.append(f"{what} changed `requires_grad` of the model's parameters")
        if _hook_count(mod) != n:
            problems.append(
                f"{what} left {_hook_count(mod) - n} hook(s) registered on the model "
                f"(remove each handle in a `finally:` block, also when the forward pass "
                f"raises)"
            )
    if problems:
        fail("; ".join(problems) + ".")
    if raised is not None:
        raise raised


def expect_same_module(
    got: torch.nn.Module,
    reference: torch.nn.Module,
    inputs: Sequence[torch.Tensor],
    what: str,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    wrong: Mapping[str, Callable[[], torch.nn.Module]] | None = None,
) -> None:
    """Compare two modules by behaviour: outputs and input gradients with shared weights.

    The reference takes the student's weights when their state dicts have the same keys and
    shapes (in order); otherwise both modules must already have been seeded identically by the
    caller. Both are compared in train mode and in eval mode.

    Args:
        got: The student's module.
        reference: The reference module (its weights are overwritten).
        inputs: Inputs to try, each ``(N, C, H, W)`` or whatever the module takes.
        what: How to name the module in messages.
        atol: Absolute tolerance.
        rtol: Relative tolerance.
        wrong: Known mistakes: hint -> a builder of the module that mistake produces. If the
            student's outputs match one of them (with the student's weights), that hint is the
            message.

    Raises:
        CheckFailed: With the first input on which outputs or gradients differ.
    """
    got = expect_module(got, what)

    def load(dst: torch.nn.Module) -> bool:
        src = list(got.state_dict().values())
        tgt = dst.state_dict()
        if len(src) != len(tgt) or any(a.shape != b.shape for a, b in zip(src, tgt.values(), strict=True)):
            return False
        dst.load_state_dict(dict(zip(tgt.keys(), src, strict=True)))
        return True

    load(reference)
    got_dtype = next((p.dtype for p in got.parameters()), torch.float32)
    reference.to(got_dtype)

    def run(module: torch.nn.Module, x: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        was = module.training
        module.train(train)
        x = x.detach().to(got_dtype).requires_grad_(True)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                y = call(module, x, describe=f"an input of shape {tuple(x.shape)}")
            y_t = as_tensor(y, f"{what}'s output")
            (
                y_t.double() * torch.linspace(-1, 1, y_t.numel(), dtype=torch.float64).reshape(y_t.shape)
            ).sum().backward()
        finally:
            module.train(was)
        return y_t.detach(), (x.grad if x.grad is not None else torch.zeros_like(x)).detach()

    for train in (False, True):
        for x in inputs:
            mode = "train" if train else "eval"
            ref_y, ref_g = run(reference, x, train)
            y, g = run(got, x, train)
            hints: dict[str, Callable[[], torch.Tensor]] = {}
            for hint, build in (wrong or {}).items():

                def mistaken(
                    build: Callable[[], torch.nn.Module] = build,
                    x: torch.Tensor = x,
                    train: bool = train,
                    like: torch.Tensor = ref_y,
                ) -> torch.Tensor:
                    m = build()
                    if not load(m):
                        return torch.full_like(like, float("nan"))
                    return run(m.to(got_dtype), x, train)[0]

                hints[hint] = mistaken
            expect_tensor(
                y,
                ref_y,
                f"{what}'s output ({mode} mode, input {fmt_shape(x)})",
                wrong=hints,
                atol=atol,
                rtol=rtol,
            )
            expect_tensor(
                g,
                ref_g,
                f"the gradient through {what} ({mode} mode, input {fmt_shape(x)})",
                atol=atol,
                rtol=rtol,
            )


_WHOLE_CONV = "it computes the whole convolution for you; write the sliding sum yourself."
_OURS = "that is cnnbook's own answer; write yours."
# library functions that would do a convolution exercise for the student (14.1, 14.14)
CONV_LIBRARY = {
    "torch.nn.functional.conv2d": _WHOLE_CONV,
    "torch.conv2d": _WHOLE_CONV,
    "torch.nn.Conv2d": _WHOLE_CONV,
    "torch.nn.functional.conv1d": _WHOLE_CONV,
    "torch.conv1d": _WHOLE_CONV,
    "torch.convolution": _WHOLE_CONV,
    "torch.nn.functional.conv_transpose2d": _WHOLE_CONV,
    "torch._convolution": _WHOLE_CONV,
    "cnnbook.ops.conv2d_loops": _OURS,
    "cnnbook.ops.conv2d_unfold": _OURS,
    "cnnbook.ops.convolve2d": _OURS,
    "cnnbook.ops.correlate1d": _OURS,
    "cnnbook.ops.convolve1d": _OURS,
    "cnnbook.kernels.apply_kernel": _OURS,
    "scipy.signal.correlate2d": _WHOLE_CONV,
    "scipy.signal.convolve2d": _WHOLE_CONV,
    "scipy.signal.correlate": _WHOLE_CONV,
    "scipy.signal.convolve": _WHOLE_CONV,
    "scipy.signal.fftconvolve": _WHOLE_CONV,
    "scipy.ndimage.correlate": _WHOLE_CONV,
    "scipy.ndimage.convolve": _WHOLE_CONV,
    "numpy.convolve": _WHOLE_CONV,
    "numpy.correlate": _WHOLE_CONV,
}

NONSQUARE_HINT = (
    "Your answer is right on every case with square images and kernels and wrong "
    "on the non-square ones: keep the two sizes apart (e.g. `kh, kw = "
    "kernel.shape` and `h, w = image.shape[-2:]`)."
)
BATCH_HINT = (
    "Your answer is right for a batch of one image and wrong for N > 1: handle every "
    "image of the batch (loop over the first axis, or keep it in your tensor "
    "operations)."
)


# ------------------------------------------------------------------ the case runner

# How :func:`judge` makes verdicts deterministic and hints honest:
# * every check runs a fixed list of edge cases (non-square images and kernels, batches larger
#   than one, several channels, zero shifts, sizes not divisible by the stride, ...) first, then
#   random cases drawn from the check's seed; a wrong answer is caught by the fixed cases on
#   every seed;
# * a hint names a mistake only when the student's answer equals that mistaken version
#   (recomputed by the checker) on *every* case, or when the answer is right on every case
#   except exactly those with one property (e.g. "right on square kernels, wrong on the
#   others"); otherwise the message says what differs on the first failing case.


@dataclass(frozen=True)
class Case:
    """One input to try a student's answer on.

    Attributes:
        args: Positional arguments for the student's function.
        label: How to describe the arguments in a message.
        tags: Properties of the case (``"nonsquare"``, ``"batch"``, ``"zero shift"``, ...) used to
            recognise answers that fail exactly on the cases with one property.
    """

    args: tuple[Any, ...]
    label: str
    tags: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class _Raised:
    message: str


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _quiet(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run one of the checker's own (reference or mistaken) versions; an exception is a value."""
    try:
        return fn(*args)
    except Exception as exc:  # a mistaken version may raise where the student's does
        return _Raised(f"{type(exc).__name__}: {exc}")


def judge(
    fn: Callable[..., Any],
    cases: Sequence[Case],
    *,
    reference: Callable[..., Any],
    compare: Callable[[Any, Any, str], Any],
    mistakes: Sequence[tuple[str, Callable[..., Any]]] = (),
    patterns: Sequence[tuple[str, str]] = (),
    forbidden: Mapping[str, str] | None = None,
    around: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> None:
    """Run ``fn`` on every case and fail with the first difference, naming a recognised mistake.

    Args:
        fn: The student's function.
        cases: Fixed edge cases first, then random ones.
        reference: Computes the expected answer from a case's arguments.
        compare: ``compare(got, expected, label)`` raises :class:`CheckFailed` saying what
            differs (e.g. :func:`cnnbook.checks.core.expect_tensor`); it is also used, with the
            same tolerance, to test whether the answer equals a mistaken version.
        mistakes: ``(hint, mistaken_fn)`` pairs: ``mistaken_fn`` takes the same arguments and
            computes (or raises) what that mistake gives. The hint is reported only when the
            student's answer agrees with it on every case.
        patterns: ``(tag, hint)`` pairs: the hint is reported when the answer fails on some
            cases, all of which carry ``tag``, and passes every case without it.
        forbidden: Library shortcuts the exercise forbids (see :func:`forbid`).
        around: Extra context (e.g. :func:`cnnbook.checks.core.guard`) around the student's calls.

    Raises:
        CheckFailed: On the first failing case, with the recognised mistake when there is one.
    """
    expected = [reference(*c.args) for c in cases]
    outcomes: list[Any] = []
    with (
        forbid(fn, forbidden) if forbidden else contextlib.nullcontext(),
        around() if around else contextlib.nullcontext(),
    ):
        for c in cases:
            try:
                outcomes.append(call(fn, *_clone(c.args), describe=c.label))
            except CheckFailed as exc:
                if " calls `" in str(exc):  # a forbidden shortcut: no point in going on
                    raise
                outcomes.append(_Raised(str(exc)))

    def agrees(got: Any, want: Any, label: str) -> bool:
        if isinstance(got, _Raised) or isinstance(want, _Raised):
            return isinstance(got, _Raised) and isinstance(want, _Raised)
        try:
            compare(got, want, label)
        except CheckFailed:
            return False
        return True

    failures: list[tuple[Case, str]] = []
    for c, got, want in zip(cases, outcomes, expected, strict=True):
        if isinstance(got, _Raised):
            failures.append((c, got.message))
            continue
        try:
            compare(got, want, c.label)
        except CheckFailed as exc:
            failures.append((c, str(exc)))
    if not failures:
        return
    first = failures[0][1]
    for hint, wrong in mistakes:
        if all(agrees(got, _quiet(wrong, c.args), c.label) for c, got in zip(cases, outcomes, strict=True)):
            fail(f"{first}\n   Likely mistake: {hint}")
    for tag, hint in patterns:
        if all(tag in c.tags for c, _ in failures) and any(tag not in c.tags for c in cases):
            fail(f"{first}\n   Likely mistake: {hint}")
    fail(first)


def tensor_compare(shape_hint: Callable[[str], str] | None = None) -> Callable[[Any, Any, str], Any]:
    """A ``compare`` for :func:`judge`: :func:`expect_tensor` plus ``shape_hint(label)``."""

    def compare(got: Any, want: Any, label: str) -> Any:
        return expect_tensor(got, want, label, shape_hint=shape_hint(label) if shape_hint else "")

    return compare


def randomise_bn(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Give every ``BatchNorm2d`` in ``module`` random affine weights and running statistics.

    A fresh batch norm is the identity in eval mode, which would hide a missing or misplaced
    one; after this, each one changes its input.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.weight is not None  # affine batch norm (the default)
                assert m.bias is not None
                assert m.running_mean is not None
                assert m.running_var is not None
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
