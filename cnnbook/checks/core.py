"""The checker framework behind every exercise notebook (all sections).

A checker runs a student's answer on fresh random inputs, compares it with a reference and
prints one line:

* ``✅ Correct: ...`` and returns a truthy :class:`CheckResult`;
* ``❌ ...`` with what differs on the smallest failing input, the requirement that failed in
  the exercise's words and a hint (a deeper one on request: :func:`hint` ``(2)``), then raises
  :class:`CheckFailed` (an ``AssertionError``, so a broken *solution* notebook fails in CI);
* ``⏳ ... is not implemented yet`` and re-raises ``NotImplementedError`` while the answer is
  still the ``raise NotImplementedError()`` placeholder.

Checkers are plain functions decorated with :func:`checker`. Inside, they call the student's
code through :func:`call` (which turns the student's exceptions into helpful messages), compare
with :func:`expect_tensor` / :func:`expect_equal` (which recognise known mistakes from a table of
"wrong answers" and name them), and check types (:func:`expect_int`), storage
(:func:`expect_no_shared_storage`) and side effects on the caller (:func:`preserved_state`,
:func:`expect_detached`). Predict-then-check exercises read the student's predictions with
:func:`expect_option` (a letter), :func:`expect_number` and :func:`expect_answers` (a dict);
:func:`deeper_hint` gives any failure inside it a second-level hint. What an exercise asks
the student to write is made unusable while their code runs, a whole family at a time and
by behaviour (:func:`forbidden` with :data:`FAMILY_CONV`, :data:`FAMILY_POOL`, ...).
Checkers that try a list of edge cases run them through :func:`judge` (one :class:`Case` per
input).
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
    """A student's answer disagreed with the reference; the message says how.

    Attributes:
        requirement: The requirement that failed, in the exercise's words (``""``: the
            checker's own, see :func:`checker`).
        hint2: A deeper hint, shown on request (:func:`hint` ``(2)`` or ``hints=2``).
    """

    def __init__(self, message: str = "", *, requirement: str = "", hint2: str = "") -> None:
        super().__init__(message)
        self.requirement = requirement
        self.hint2 = hint2

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback into the checker: the ❌ line printed above
        # already says what went wrong, so the student sees one short line, not library frames.
        return ["The check above did not pass: change your answer and run the cell again."]


class ForbiddenUse(CheckFailed):
    """The student's code reached a library function the exercise asks them to write."""


class ForbiddenCall(Exception):
    """Raised by a patched library function that an exercise asks the student to write.

    Attributes:
        target: What was called.
        why: Why it is not allowed here.
        where: `` (at `line`)`` naming the student's line, or ``""``.
    """

    def __init__(self, target: str, why: str = "", where: str = "") -> None:
        super().__init__(target)
        self.target = target
        self.why = why
        self.where = where


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

    def _ipython_display_(self) -> None:
        # A check cell ends in the checker call; its printed ✅ line is the whole answer, so
        # Jupyter shows nothing more for the returned result.
        return None


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


_LAST_FAILURE: dict[str, str] = {}  # title, requirement, hint2 of the last failed check (for hint())


def hint(level: int = 2) -> str:
    """Print (and return) the deeper hint of the last check that failed in this session.

    Usage in a notebook, after a ❌: ``from cnnbook.checks import hint; hint(2)``. Level 1
    repeats the requirement that failed; level 2 goes one step further without the answer.

    Args:
        level: 1 (the requirement again) or 2 (the deeper hint).

    Returns:
        The text printed.
    """
    if not _LAST_FAILURE:
        text = "No check has failed yet: run a check first; after a ❌, hint(2) gives a further hint."
    elif level <= 1 or not _LAST_FAILURE.get("hint2"):
        requirement = _LAST_FAILURE.get("requirement") or "see the failure message above"
        extra = "" if level <= 1 else " (there is no further hint for this check)"
        text = f"💡 {_LAST_FAILURE['title']}: the requirement is: {requirement}{extra}"
    else:
        text = f"💡 {_LAST_FAILURE['title']}, a further hint: {_LAST_FAILURE['hint2']}"
    print(text)
    return text


def checker(
    title: str, *, requirement: str = ""
) -> Callable[[Callable[..., str]], Callable[..., CheckResult]]:
    """Turn ``body(ctx, *args)`` into a user-facing check function.

    The decorated function takes the student's answer(s) plus keyword-only ``seed`` (``None``
    draws a fresh one), ``raise_on_fail`` (``True``: a wrong answer raises
    :class:`CheckFailed`; ``False``: it returns a falsy :class:`CheckResult`) and ``hints``
    (``2``: print the deeper hint of a failure at once, as :func:`hint` ``(2)`` would).

    Args:
        title: Short name of what is checked, used in the printed line.
        requirement: The exercise's main requirement in its own words, printed with a failure
            that does not name a more precise one (``fail(..., requirement=...)``).

    Returns:
        A decorator.
    """

    def decorate(body: Callable[..., str]) -> Callable[..., CheckResult]:
        @functools.wraps(body)
        def run(
            *answers: Any, seed: int | None = None, raise_on_fail: bool = True, hints: int = 1
        ) -> CheckResult:
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
                req = exc.requirement or requirement
                msg = f"❌ {title}: {exc}"
                if req:
                    msg += f"\n   Requirement: {req}"
                msg += (
                    f"\n   (random inputs from seed={seed}; pass seed={seed} to this check to reproduce them)"
                )
                if exc.hint2 and hints >= 2:
                    msg += f"\n   💡 A further hint: {exc.hint2}"
                elif exc.hint2:
                    msg += (
                        "\n   💡 Stuck? `from cnnbook.checks import hint; hint(2)` gives a further "
                        "hint (or rerun this check with hints=2)."
                    )
                _LAST_FAILURE.clear()
                _LAST_FAILURE.update(title=title, requirement=req, hint2=exc.hint2)
                print(msg)
                if raise_on_fail:
                    raise CheckFailed(msg) from None
                return CheckResult(title, False, msg, seed)
            msg = f"✅ Correct: {praise}"
            print(msg)
            return CheckResult(title, True, msg, seed)

        return run

    return decorate


def fail(message: str, *, requirement: str = "", hint2: str = "") -> NoReturn:
    """Abort the running check with ``message`` (expected vs got, and a hint).

    Args:
        message: What differs, and a first hint that does not give the answer away.
        requirement: The requirement that failed, in the exercise's words.
        hint2: A deeper hint, shown when the student asks (:func:`hint` ``(2)``).
    """
    raise CheckFailed(message, requirement=requirement, hint2=hint2)


@contextmanager
def deeper_hint(hint2: str) -> Iterator[None]:
    """Give a failure raised inside the block the second-level hint ``hint2`` (unless it has one).

    For checks that fail through helpers (:func:`expect_equal`, :func:`call`, ...) which take no
    ``hint2=`` themselves::

        with deeper_hint("height 10 - 3 + 1: the batch stays, the channels become C_out."):
            expect_equal(got, want, "the output shape")
    """
    try:
        yield
    except CheckFailed as exc:
        exc.hint2 = exc.hint2 or hint2
        raise


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
        raise ForbiddenUse(f"{name} calls `{exc.target}`{exc.where}: {why}") from None
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


# ------------------------------------------------------------------ forbidden families


@dataclass(frozen=True)
class Family:
    """Library functions that all do one job an exercise asks the student to do by hand.

    :func:`forbidden` enforces a family by behaviour while the student's code runs, so a sibling
    (``F.conv3d`` with a depth of one), the operator underneath (``torch.ops.aten.convolution``,
    ``torch._C._nn.thnn_conv2d``), a private helper (``torchvision.ops.boxes._box_inter_union``)
    or a library imported inside the function body is caught as surely as the obvious call.

    Attributes:
        name: What the family computes, in a few words (``"convolution"``).
        does: What a member does, completing "that ..." (``"computes a convolution for you"``).
        task: The requirement it protects, in the exercise's words (``"write the convolution
            yourself"``); :func:`forbidden`'s ``why=`` replaces it for one exercise.
        scope: What is off limits, for the message (``"every convolution of PyTorch, ..."``).
        ops: Regular expression searched in ``namespace::name`` of every dispatcher operator
            the code runs (how every PyTorch route ends, whatever Python name it was called by).
        python: ``(module regex, member regex)`` pairs: the members of every imported module
            matching both are blocked (pure-Python entry points: torchvision's box helpers,
            SciPy, NumPy, cnnbook's own answers, torch.func).
        engine: Block the autograd engine itself (every reverse-mode route to a gradient:
            ``backward``, ``torch.autograd.grad``, ``torch.func.grad``/``vjp``/``jacrev``,
            ``torch.autograd.functional.*``).
    """

    name: str
    does: str
    task: str
    scope: str
    ops: str = ""
    python: tuple[tuple[str, str], ...] = ()
    engine: bool = False


#: Module regex for cnnbook's own answers (e.g. ``cnnbook.ops.conv2d_loops``), for sections' families.
CNNBOOK_MODULES = r"cnnbook\.(?!checks)[\w.]+"
_CNNBOOK = CNNBOOK_MODULES

FAMILY_CONV = Family(
    name="convolution",
    does="computes a convolution for you",
    task="write the convolution yourself",
    scope="every convolution (1-D, 2-D, 3-D, transposed, any operator underneath) of PyTorch, "
    "SciPy, NumPy and cnnbook",
    ops=r"conv(olution|\d|_|$)",
    python=(
        (r"scipy\.(signal|ndimage)(\..+)?", r"convol|correlat"),
        (r"numpy(\._core\.numeric|\.core\.numeric)?", r"^(convolve|correlate)$"),
        (_CNNBOOK, r"^(conv\w*|correlate\w*|apply_kernel)$"),
    ),
)
FAMILY_POOL = Family(
    name="pooling",
    does="pools for you",
    task="write the pooling yourself",
    scope="every pooling function (max, average, adaptive, Lp, fractional; 1-D, 2-D, 3-D) of "
    "PyTorch and cnnbook",
    ops=r"pool",
    python=((_CNNBOOK, r"pool(\dd)?$"),),
)
FAMILY_UNFOLD = Family(
    name="window extraction",
    does="cuts the sliding windows out for you",
    task="cut the windows with your own indexing",
    scope="F.unfold, F.fold, nn.Unfold and Tensor.unfold",
    ops=r"::(im2col|col2im|unfold(_copy|_backward)?)$",
)
FAMILY_IOU = Family(
    name="box IoU",
    does="computes box overlaps for you",
    task="write the IoU yourself",
    scope="torchvision's box_iou and its relatives and private helpers (generalized, distance, "
    "complete IoU, _box_inter_union, box_area) and cnnbook's",
    python=(
        (r"torchvision\.ops(\..+)?", r"iou|inter_union|^box_area$"),
        (_CNNBOOK, r"^(\w*iou\w*|box_area)$"),
    ),
)
FAMILY_NMS = Family(
    name="non-maximum suppression",
    does="suppresses the overlapping boxes for you",
    task="write the suppression loop yourself",
    scope="torchvision's nms and batched_nms (and torch.ops.torchvision.nms) and cnnbook's",
    ops=r"^torchvision::nms$",
    python=((r"torchvision\.ops(\..+)?", r"nms"), (_CNNBOOK, r"nms")),
)
FAMILY_AUTODIFF = Family(
    name="automatic differentiation",
    does="derives the gradient for you",
    task="write the gradient formula yourself",
    scope="every autodiff route: backward(), torch.autograd.grad, torch.autograd.functional, "
    "torch.func (grad, vjp, jvp, jacrev, jacfwd, hessian) and forward-mode dual numbers",
    python=(
        (r"torch\.autograd", r"^(grad|backward)$"),
        (r"torch\.autograd\.functional", r"^(vjp|jvp|jacobian|hessian|vhp|hvp)$"),
        (r"torch\.autograd\.forward_ad", r"^(make_dual|unpack_dual|enter_dual_level)$"),
        (
            r"torch\._functorch\.(apis|eager_transforms)",
            r"^(grad|grad_and_value|vjp|jvp|jacrev|jacfwd|hessian|linearize)$",
        ),
        (r"torch", r"^_(make|unpack)_dual$"),
    ),
    engine=True,
)
FAMILY_NORM = Family(
    name="normalisation",
    does="normalises for you",
    task="compute the statistics yourself",
    scope="every batch, instance, group and layer norm of PyTorch and cnnbook",
    ops=r"(batch|instance|group|layer)_norm|_batch_norm",
    python=((_CNNBOOK, r"^(batch_stats|BatchNorm2d)$"),),
)

FAMILY_LAYERS = Family(
    name="building layers",
    does="builds a layer (every nn.Module starts in nn.Module.__init__), and PyTorch would then "
    "count its parameters for you",
    task="count the parameters from the layer shapes yourself",
    scope="building any layer or model (nn.Conv2d, nn.Linear, torchvision's or cnnbook's VGG, "
    "also on the meta device or through skip_init)",
    python=((r"torch\.nn\.modules\.module", r"^Module$"),),
)


def count_by_hand(*counters: tuple[str, str]) -> tuple[Family, Family]:
    """What a parameter count "from the layer shapes" forbids (sections 14.6-14.8).

    Building any layer (:data:`FAMILY_LAYERS`), and every helper that counts for you:
    cnnbook's ``cnnbook.models.mobile.*_conv_params`` plus ``counters``, a section's own
    reference counts as ``(module regex, member regex)`` pairs. Use it as
    ``forbidden(*count_by_hand(...), why=...)``.
    """
    helpers = Family(
        name="parameter counters",
        does="counts the parameters for you",
        task="count the parameters from the layer shapes yourself",
        scope="cnnbook's own counting helpers (these checks' reference counts, "
        "cnnbook.models.mobile's *_conv_params)",
        python=((r"cnnbook\.models\.mobile", r"^\w+_conv_params$"), *counters),
    )
    return FAMILY_LAYERS, helpers


@dataclass(frozen=True)
class Reached:
    """One use of a forbidden family.

    Attributes:
        family: The family.
        entry: What was reached (``"torch.ops.aten.max_pool3d_with_indices"``).
        line: The student's source line that led there (``""`` if unknown).
    """

    family: Family
    entry: str
    line: str


_ACTIVE: list[_Guard] = []  # the forbidden() blocks now running, innermost last
_STUBS: dict[int, tuple[Family, str, Any]] = {}  # id(stub code) -> (family, entry, code)


def _library_roots() -> tuple[str, ...]:
    import os
    import sysconfig

    paths = sysconfig.get_paths()
    roots = {paths["stdlib"], paths["purelib"], paths["platlib"], os.path.dirname(os.path.dirname(__file__))}
    return tuple(os.path.realpath(r) for r in roots)


@functools.cache
def _roots() -> tuple[str, ...]:
    return _library_roots()


def _student_line(frame: Any) -> str:
    """The first source line, walking out from ``frame``, that is not in a library or cnnbook."""
    import linecache
    import os

    while frame is not None:
        name = frame.f_code.co_filename
        path = os.path.realpath(name) if not name.startswith("<") else name
        library = name.startswith("<frozen") or name == "<forbidden>" or path.startswith(_roots())
        if not library:
            return linecache.getline(name, frame.f_lineno).strip()
        frame = frame.f_back
    return ""


def _trip(family: Family, entry: str, frame: Any) -> NoReturn:
    """Record a use of ``family`` in the innermost active block and raise :class:`ForbiddenCall`."""
    reached = Reached(family, entry, _student_line(frame))
    why = family.does
    if _ACTIVE:
        _ACTIVE[-1].reached.append(reached)
        why = _ACTIVE[-1].explain(reached)
    raise ForbiddenCall(entry, why, f" (at `{reached.line}`)" if reached.line else "")


def _trip_python(frame: Any) -> Any:
    """Called by a blocked Python function (its code is swapped for a stub that calls this)."""
    family, entry, _ = _STUBS[id(frame.f_code)]
    return _trip(family, entry, frame.f_back)


def _stub_code(n_free: int, entry: str) -> Any:
    """A code object that calls :func:`_trip_python` from any module (``n_free`` closure cells)."""
    free = [f"_c{i}" for i in range(n_free)]
    src = (
        "def _outer():\n"
        + (f"    {', '.join(free)} = {', '.join(['None'] * n_free)}\n" if free else "")
        + "    def blocked(*args, **kwargs):\n"
        + (f"        ({', '.join(free)},)\n" if free else "")
        + "        import sys\n"
        + "        return sys.modules['cnnbook.checks.core']._trip_python(sys._getframe())\n"
        + "    return blocked\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(src, "<forbidden>", "exec"), namespace)  # a fixed template
    code = namespace["_outer"]().__code__
    return code.replace(co_name=entry.rsplit(".", 1)[-1], co_qualname=entry)


class _EngineProxy:
    """Stands in for autograd's engine: running a backward pass trips the guard."""

    def __init__(self, real: Any, family: Family) -> None:
        self._real = real
        self._family = family

    def run_backward(self, *_a: Any, **_k: Any) -> Any:
        return _trip(self._family, "the autograd engine (a backward pass)", sys._getframe(1))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _op_watch(guard: _Guard) -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpWatch(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            schema = getattr(func, "_schema", None)
            if schema is not None:
                family = guard.family_of_op(schema.name)
                if family is not None:
                    entry = "torch.ops." + schema.name.replace("::", ".")
                    _trip(family, entry, sys._getframe(1))
            return func(*args, **(kwargs or {}))

    return OpWatch()


class _Guard:
    """The state of one :func:`forbidden` block: what is blocked, how to undo it, what was reached."""

    def __init__(self, families: Sequence[Family], why: str) -> None:
        import re

        self.families = tuple(families)
        self.why = why
        self.reached: list[Reached] = []
        self._ops = [(re.compile(f.ops), f) for f in self.families if f.ops]
        self._python = [(re.compile(m), re.compile(n), f) for f in self.families for m, n in f.python]
        self._undo: list[Callable[[], None]] = []
        self._blocked: set[int] = set()
        self._n_modules = -1

    def explain(self, reached: Reached) -> str:
        """Why ``reached`` fails the check, naming the requirement and what is off limits."""
        f = reached.family
        task = (self.why or f.task).removeprefix("to ")
        return f"that {f.does}, and this exercise asks you to {task}; {f.scope} is off limits here."

    def message(self, reached: Reached, who: str = "your code") -> str:
        """The failure message for ``reached``."""
        at = f" (at `{reached.line}`)" if reached.line else ""
        return f"{who} calls `{reached.entry}`{at}: {self.explain(reached)}"

    def family_of_op(self, name: str) -> Family | None:
        for pattern, family in self._ops:
            if pattern.search(name):
                return family
        return None

    def _block_function(self, fn: Any, family: Family, entry: str) -> None:
        if id(fn) in self._blocked or id(fn.__code__) in _STUBS:
            return
        original = fn.__code__
        stub = _stub_code(len(original.co_freevars), entry)
        _STUBS[id(stub)] = (family, entry, stub)
        fn.__code__ = stub
        self._blocked.add(id(fn))

        def undo(fn: Any = fn, original: Any = original, stub: Any = stub) -> None:
            fn.__code__ = original
            _STUBS.pop(id(stub), None)

        self._undo.append(undo)

    def _block_attribute(self, owner: Any, attr: str, family: Family, entry: str) -> None:
        original = getattr(owner, attr)
        if id(original) in self._blocked:
            return

        def blocked(*_a: Any, **_k: Any) -> Any:
            return _trip(family, entry, sys._getframe(1))

        setattr(owner, attr, blocked)
        self._blocked.add(id(blocked))
        self._undo.append(lambda: setattr(owner, attr, original))

    def scan(self) -> None:
        """Block the Python entry points of every module imported so far (again after imports)."""
        if len(sys.modules) == self._n_modules or not self._python:
            return
        self._n_modules = len(sys.modules)
        for modname, module in list(sys.modules.items()):
            for mod_re, member_re, family in self._python:
                if module is None or not mod_re.fullmatch(modname):
                    continue
                for attr, obj in list(vars(module).items()):
                    if member_re.search(attr) and not inspect.ismodule(obj):
                        self._block(module, modname, attr, obj, family)

    def _block(self, module: Any, modname: str, attr: str, obj: Any, family: Family) -> None:
        import types

        if isinstance(obj, type):
            init = vars(obj).get("__init__")
            if isinstance(init, types.FunctionType):
                self._block_function(init, family, f"{obj.__module__}.{obj.__qualname__}")
            return
        if isinstance(obj, types.FunctionType):
            self._block_function(obj, family, f"{obj.__module__}.{obj.__qualname__}")
            return
        impl = getattr(obj, "_implementation", None)  # numpy's array-function dispatchers
        if isinstance(impl, types.FunctionType):
            self._block_function(impl, family, f"{modname}.{attr}")
            return
        if callable(obj):
            self._block_attribute(module, attr, family, f"{modname}.{attr}")

    def __enter__(self) -> _Guard:
        import builtins
        import importlib

        _ACTIVE.append(self)
        try:
            self.scan()
            original_import = builtins.__import__
            original_import_module = importlib.import_module

            depth = [0]

            def hooked_import(*args: Any, **kwargs: Any) -> Any:
                depth[0] += 1
                try:
                    module = original_import(*args, **kwargs)
                finally:
                    depth[0] -= 1
                if not depth[0]:  # a module is complete only when the outermost import returns
                    self.scan()
                return module

            def hooked_import_module(*args: Any, **kwargs: Any) -> Any:
                module = original_import_module(*args, **kwargs)
                self.scan()
                return module

            builtins.__import__ = hooked_import
            importlib.import_module = hooked_import_module
            self._undo.append(lambda: setattr(builtins, "__import__", original_import))
            self._undo.append(lambda: setattr(importlib, "import_module", original_import_module))
            engine_families = [f for f in self.families if f.engine]
            if engine_families:
                from torch.autograd.variable import Variable

                real = Variable._execution_engine
                Variable._execution_engine = _EngineProxy(real, engine_families[0])  # type: ignore[assignment]
                self._undo.append(lambda: setattr(Variable, "_execution_engine", real))
            if self._ops:
                mode = _op_watch(self)
                mode.__enter__()
                self._undo.append(lambda: mode.__exit__(None, None, None))
        except BaseException:
            self.restore()
            raise
        return self

    def restore(self) -> None:
        """Undo every patch (also used by :func:`allowed`; ``__enter__`` blocks again)."""
        while self._undo:
            self._undo.pop()()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self._blocked.clear()
        self._n_modules = -1

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self.restore()


@contextmanager
def forbidden(*families: Family, why: str = "", hint2: str = "") -> Iterator[_Guard]:
    """Make whole families of library functions unusable while the block runs.

    Every route to a family member fails the check with a message naming what was reached, the
    student's line that reached it and the requirement: a call through :func:`call` raises
    :class:`ForbiddenUse` at once; a use the student's code caught (``try: ... except:``) fails
    when the block ends. Run the checker's own reference code outside the block, or inside
    :func:`allowed`.

    Args:
        *families: What is off limits (``FAMILY_CONV``, ``FAMILY_POOL``, ...).
        why: The requirement in the exercise's words, replacing each family's ``task``
            (``"write the max pool yourself"``).
        hint2: A deeper hint for a failure from this block (``""``: none).

    Yields:
        The guard; its ``reached`` lists every use so far.

    Raises:
        ForbiddenUse: When the student's code reached a member of a family.
    """
    guard = _Guard(families, why)
    with guard:
        try:
            yield guard
        except ForbiddenCall:  # student code run without call(): the same message
            raise ForbiddenUse(guard.message(guard.reached[-1]), hint2=hint2) from None
        except ForbiddenUse as exc:  # raised by call()
            if not hint2 or exc.hint2:
                raise
            raise ForbiddenUse(str(exc), requirement=exc.requirement, hint2=hint2) from None
    if guard.reached:  # reached, but the student's code caught the error and went on
        raise ForbiddenUse(guard.message(guard.reached[0]), hint2=hint2)


def _forbidden_block(families: Sequence[Family], why: str) -> contextlib.AbstractContextManager[_Guard]:
    return forbidden(*families, why=why)  # for judge(), whose argument shadows the name


@contextmanager
def allowed() -> Iterator[None]:
    """Let the checker's own code use forbidden families inside a :func:`forbidden` block."""
    active = list(_ACTIVE)
    for guard in reversed(active):
        guard.restore()
    try:
        yield
    finally:
        for guard in active:
            guard.__enter__()


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
T = TypeVar("T")


@overload
def modules_of(module: torch.nn.Module, kind: type[M]) -> list[M]: ...
@overload
def modules_of(module: torch.nn.Module, kind: tuple[type, ...]) -> list[torch.nn.Module]: ...
def modules_of(module: torch.nn.Module, kind: type | tuple[type, ...]) -> list[Any]:
    """All submodules of ``module`` (itself included) that are instances of ``kind``."""
    return [m for m in module.modules() if isinstance(m, kind)]


# ------------------------------------------------------------------ behaviour and global state


def fixed(seed: int, build: Callable[[], T]) -> T:
    """Build something with torch's global RNG seeded by ``seed`` (the caller's RNG untouched).

    Fixed edge cases use it for their models and inputs, so they are the same on every seed
    of the check and a given answer always gets the same verdict.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _hook_count(module: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in module.modules()
    )


@dataclass
class _Snapshot:
    """What :func:`preserved_state` compares: the caller-visible state of some modules."""

    grad_enabled: bool
    modes: list[list[tuple[str, torch.nn.Module, bool]]]
    flags: list[list[bool]]
    hooks: list[int]
    grads: list[list[tuple[str, torch.Tensor | None]]]
    values: list[list[tuple[str, torch.Tensor]]]
    rng: tuple[Any, Any, Any]

    @staticmethod
    def take(modules: Sequence[torch.nn.Module], *, values: bool) -> _Snapshot:
        import random

        import numpy as np

        return _Snapshot(
            grad_enabled=torch.is_grad_enabled(),
            modes=[
                [(n or type(m).__name__, m, m.training) for n, m in mod.named_modules()] for mod in modules
            ],
            flags=[[p.requires_grad for p in mod.parameters()] for mod in modules],
            hooks=[_hook_count(mod) for mod in modules],
            grads=[
                [(n, None if p.grad is None else p.grad.detach().clone()) for n, p in mod.named_parameters()]
                for mod in modules
            ],
            values=[
                [(n, t.detach().clone()) for n, t in [*mod.named_parameters(), *mod.named_buffers()]]
                for mod in modules
            ]
            if values
            else [],
            rng=(torch.get_rng_state(), random.getstate(), np.random.get_state()),
        )

    def restore(
        self,
        modules: Sequence[torch.nn.Module],
        *,
        grads: bool,
        rng: bool,
        flags: bool = True,
        modes: bool = True,
    ) -> None:
        import random

        import numpy as np

        torch.set_grad_enabled(self.grad_enabled)
        for mod, saved_modes, saved_flags, saved in zip(
            modules, self.modes, self.flags, self.grads, strict=True
        ):
            if modes:
                for _, m, was in saved_modes:
                    m.training = was
            params = list(mod.parameters())
            if flags and len(params) == len(saved_flags):
                for p, flag in zip(params, saved_flags, strict=True):
                    p.requires_grad_(flag)
            named = dict(mod.named_parameters())
            if grads:
                for name, grad in saved:
                    if name in named:
                        named[name].grad = grad
        if rng:
            torch.set_rng_state(self.rng[0])
            random.setstate(self.rng[1])
            np.random.set_state(self.rng[2])


def _reveal(
    modules: Sequence[torch.nn.Module], gen: torch.Generator, *, modes: bool = True, every_grad: bool = False
) -> None:
    """Put ``modules`` in a state where side effects show (see :func:`preserved_state`).

    ``modes=False`` leaves the train/eval flags as the caller set them; ``every_grad`` gives
    frozen parameters accumulated gradients too.
    """
    import random

    import numpy as np

    torch.set_grad_enabled(True)
    for mod in modules:
        if modes:
            mod.train()
            frozen: list[torch.nn.Module] = [
                m for m in mod.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            ]
            if not frozen:  # no batch norm: freeze the first leaf layer instead
                frozen = [m for m in mod.modules() if not list(m.children()) and m is not mod][:1]
            for m in frozen:
                m.eval()
        for p in mod.parameters():
            if p.requires_grad or every_grad:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
    torch.manual_seed(20_240_601)
    random.seed(20_240_601)
    np.random.seed(20_240_601)


def _changed_tensors(
    before: list[tuple[str, torch.Tensor | None]], after: list[tuple[str, torch.Tensor | None]]
) -> tuple[list[str], list[str]]:
    """Names whose tensor became ``None``/zero (wiped) and names whose values changed."""
    now = dict(after)
    wiped, changed = [], []
    for name, was in before:
        got = now.get(name)
        if was is None:
            if got is not None:
                changed.append(name)
            continue
        if got is None or (not bool(got.any()) and bool(was.any())):
            wiped.append(name)
        elif got.shape != was.shape or not torch.equal(got.detach(), was):
            changed.append(name)
    return wiped, changed


def _some(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@contextmanager
def preserved_state(
    *modules: torch.nn.Module,
    what: str = "your code",
    reveal: bool = False,
    grads: bool | None = None,
    weights: bool = False,
    private_rng: bool = False,
    flags: bool = True,
    modes: bool = True,
    hooks: bool = True,
    requirement: str = "",
    hint2: str = "",
) -> Iterator[None]:
    """Fail if the block changes state the caller owns and the student should leave alone.

    Checked by default, after the block (also when it raised): the grad mode, the modules'
    structure, and (each switched off by its argument where the exercise's answer changes it)
    the train/eval flag of every submodule (named one by one), every parameter's
    ``requires_grad`` and the number of hooks registered on them. Optional checks below.
    Whatever changed is put back before failing, so one wrong answer does not break the
    student's later cells; with ``reveal`` the caller's own state is put back at the end in
    every case, except what ``flags=False`` / ``modes=False`` leave to the checker.

    Args:
        *modules: Modules whose state must come back unchanged.
        what: How to name the student's code in the message.
        reveal: Start from a state that makes side effects visible: grad mode on, every module
            in train mode except each batch norm (or, without one, the first leaf layer),
            which is in eval mode as a frozen layer inside a training model is; accumulated
            gradients on every trainable parameter; a known global RNG state (torch, random,
            NumPy). Implies ``grads`` unless that is given.
        grads: The parameters' ``.grad`` must come back unchanged (not wiped by ``zero_grad``,
            not added to by a ``backward``).
        weights: Parameter and buffer values (running statistics included) must not change.
        private_rng: The global RNGs (torch, random, NumPy) must not be reseeded or drawn from:
            the exercise asks for a private ``torch.Generator``.
        flags: Every parameter's ``requires_grad`` must come back unchanged. ``False`` for a
            freezing exercise, whose answer IS a change of ``requires_grad``: those changes are
            left for the checker to inspect (not put back), ``reveal`` gives frozen parameters
            accumulated gradients too, and everything else is still checked.
        modes: Every submodule's train/eval flag must come back unchanged. ``False`` for an
            exercise whose answer changes modes (freezing batch norm): ``reveal`` then leaves
            the modes as the caller set them, and the modes the code leaves are not put back.
        hooks: No hook may be left registered. ``False`` where a hook is a valid answer (a
            forward pre-hook that keeps frozen batch norm in eval mode).
        requirement: The requirement a failure names (``""``: the checker's own).
        hint2: The deeper hint of a failure.

    Raises:
        CheckFailed: Naming each piece of state that changed.
    """
    grads = reveal if grads is None else grads
    mods = list(modules)
    original = _Snapshot.take(mods, values=False) if reveal else None
    if reveal:
        _reveal(mods, torch.Generator().manual_seed(0), modes=modes, every_grad=not flags)
    before = _Snapshot.take(mods, values=weights)
    raised: BaseException | None = None
    try:
        yield
    except BaseException as exc:  # re-raised below after the state check
        raised = exc
    after = _Snapshot.take(mods, values=weights)
    ended = "raised" if raised else "returned"
    problems: list[str] = []
    if after.grad_enabled != before.grad_enabled:
        problems.append(
            f"gradients were left {'off' if before.grad_enabled else 'on'} globally after {what} "
            f"{ended} (use `with torch.no_grad():` so they come back on by themselves)"
        )
    for i in range(len(mods)):
        was, now = before.modes[i], after.modes[i]
        if len(now) != len(was):
            problems.append(
                f"{what} added or removed layers of the model ({len(was)} modules "
                f"before, {len(now)} after); leave its structure as it is"
            )
        elif modes:
            moved = [(n, m, b) for (n, m, b), (_, _, a) in zip(was, now, strict=True) if a != b]
            if moved and moved[0][1] is mods[i] and all(b == moved[0][2] for _, _, b in moved):
                problems.append(
                    f"{what} left the model in {'eval' if moved[0][2] else 'train'} mode; it "
                    f"was in {'train' if moved[0][2] else 'eval'} mode before (restore it)"
                )
            elif moved:
                woke = [f"`{n}` ({type(m).__name__})" for n, m, b in moved if not b]
                slept = [f"`{n}` ({type(m).__name__})" for n, m, b in moved if b]
                parts = []
                if woke:
                    parts.append(f"put {', '.join(woke[:3])} in train mode although it was in eval mode")
                if slept:
                    parts.append(f"left {', '.join(slept[:3])} in eval mode although it was in train mode")
                problems.append(
                    f"{what} {' and '.join(parts)} (a layer frozen in eval mode inside a training "
                    f"model must stay frozen: save each submodule's own mode and restore it, not "
                    f"only the top module's)"
                )
        if len(after.flags[i]) != len(before.flags[i]):
            problems.append(
                f"{what} added or removed parameters of the model ({len(before.flags[i])} before, "
                f"{len(after.flags[i])} after), e.g. gave a layer a bias it did not have"
            )
        elif flags and after.flags[i] != before.flags[i]:
            problems.append(f"{what} changed `requires_grad` of the model's parameters")
        if hooks and after.hooks[i] != before.hooks[i]:
            problems.append(
                f"{what} left {after.hooks[i] - before.hooks[i]} hook(s) registered on the model "
                f"(remove each handle in a `finally:` block, also when the forward pass raises)"
            )
        if grads:
            wiped, changed = _changed_tensors(before.grads[i], after.grads[i])
            if wiped:
                problems.append(
                    f"{what} wiped the gradients the caller had accumulated on {_some(wiped)} (a "
                    f"`zero_grad()` or `.grad = None` inside it? clearing gradients is the caller's job)"
                )
            if changed:
                problems.append(
                    f"{what} changed the gradients the caller had accumulated on {_some(changed)} "
                    f"(a `backward()` adds to `.grad`; compute what you need without touching them, "
                    f"e.g. with torch.autograd.grad or under torch.no_grad())"
                )
        if weights:
            wiped, changed = _changed_tensors(
                [(n, t) for n, t in before.values[i]], [(n, t) for n, t in after.values[i]]
            )
            if wiped or changed:
                problems.append(
                    f"{what} changed the model's weights or buffers ({_some(wiped + changed)}); a "
                    f"forward pass in train mode updates batch-norm running statistics, an in-place "
                    f"operation on a weight changes it: leave them as they were"
                )
    if private_rng:
        names = ("torch", "Python's random", "NumPy's")
        moved_rng = [
            n
            for n, a, b in zip(names, after.rng, before.rng, strict=True)
            if not (torch.equal(a, b) if isinstance(a, torch.Tensor) else _same_state(a, b))
        ]
        if moved_rng:
            problems.append(
                f"{what} reseeded or drew from the global {' and '.join(moved_rng)} random number "
                f"generator; the exercise asks for a private one (`g = torch.Generator()."
                f"manual_seed(seed)`, then `generator=g`), so the caller's random stream is left alone"
            )
    if original is not None:
        original.restore(mods, grads=True, rng=True, flags=flags, modes=modes)
    elif problems:
        before.restore(mods, grads=grads, rng=private_rng, flags=flags, modes=modes)
    if problems:
        fail("; ".join(problems) + ".", requirement=requirement, hint2=hint2)
    if raised is not None:
        raise raised


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "shape") and hasattr(b, "shape"):
        import numpy as np

        return bool(np.array_equal(a, b))
    return bool(a == b)


def expect_detached(value: Any, what: str, *, why: str = "") -> None:
    """Fail if a returned tensor (or one inside a tuple, list or dict) is still in the graph.

    Args:
        value: What the student returned.
        what: How to name it in the message.
        why: The exercise's words for why it must be detached (``"the text says the saliency
            map is returned detached"``).
    """
    items = (
        value.items()
        if isinstance(value, Mapping)
        else enumerate(value)
        if isinstance(value, (list, tuple))
        else None
    )
    if items is not None:
        for key, item in items:
            expect_detached(item, f"{what}[{key!r}]", why=why)
        return
    if isinstance(value, torch.Tensor) and (value.requires_grad or value.grad_fn is not None):
        node = type(value.grad_fn).__name__ if value.grad_fn is not None else "requires_grad=True"
        fail(
            f"{what} is still attached to the autograd graph ({node}): it keeps every intermediate "
            f"tensor alive and a later backward would flow into it. Return `.detach()`ed values, "
            f"or compute them under `torch.no_grad()`." + (f" ({why})" if why else "")
        )


def expect_int(value: Any, what: str) -> int:
    """Return ``value`` as an ``int`` if it is an integer count; fail on floats, tensors, bools.

    NumPy integers are accepted (they are whole numbers); ``1070794.0`` is not, even though it
    is whole: a count has an integer type.

    Args:
        value: The student's count.
        what: How to name it in the message.
    """
    import numbers

    if isinstance(value, bool) or value is None:
        fail(
            f"{what} should be an int (a count), got {value!r}."
            + (" Did you forget to `return` it?" if value is None else "")
        )
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, torch.Tensor):
        shown = value.item() if value.numel() == 1 else f"a tensor of shape {tuple(value.shape)}"
        fail(
            f"{what} should be a Python int (a count), got a tensor ({shown}): compute it with "
            f"Python integers, or return `int(t.item())` of an integer tensor."
        )
    if isinstance(value, numbers.Real):
        whole = float(value).is_integer()
        fail(
            f"{what} should be an int (a count), got the {type(value).__name__} {float(value)!r}: "
            f"return an int, not {float(value)!r}"
            + (" (use integer arithmetic: `//` instead of `/`, or `int(...)` at the end)." if whole else ".")
        )
    fail(f"{what} should be an int (a count), got {type(value).__name__}.")
    raise AssertionError  # unreachable


def expect_number(value: Any, what: str) -> float:
    """A predicted number as a float, or a failure that says what to enter (predict-then-check).

    An int, float, ``fractions.Fraction``, NumPy number or one-element tensor is a number;
    ``None`` (no prediction yet), a bool and a string (``"0.82"``, ``"1/3"``) are not.

    Args:
        value: The student's prediction.
        what: How to name it in the message (``"PREDICTED_MIN"``, ``"predicted['a']"``).
    """
    import numbers

    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if value is None:
        fail(f"{what} is still None: write your prediction as a number, then run the cell again.")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(
            f"{what} should be a number (e.g. 0.25 or 1 / 4, without quotes), got "
            f"{type(value).__name__} {value!r}."
        )
    return float(value)


def expect_answers(
    answers: Any, keys: Sequence[str], what: str, *, none_allowed: bool = False
) -> dict[str, Any]:
    """A dict of answers with every key of the exercise, none left as ``...``, or a failure.

    For exercises that ask one answer per item (predict each pair, choose per request).

    Args:
        answers: The student's dict.
        keys: The keys the exercise asks for (extra keys are ignored).
        what: The variable's name, for the message.
        none_allowed: ``None`` is an answer (e.g. "no model fits"); otherwise it is one not yet given.
    """
    if not isinstance(answers, dict):
        fail(f"{what}: give a dict with the keys {list(keys)}, got {type(answers).__name__}.")
    missing = [k for k in keys if k not in answers]
    if missing:
        fail(f"{what}: give a dict with the keys {list(keys)}; missing {missing}.")
    if any(answers[k] is Ellipsis or (answers[k] is None and not none_allowed) for k in keys):
        fail(f"{what}: replace every ... with your answer before running the check.")
    return answers


def expect_option(value: Any, name: str, options: Mapping[str, Any]) -> str:
    """The option letter a prediction names (``"b"``, ``"B"``, ``"(b)"``), or a failure.

    Sections 14.6-14.8 (predict, then check).

    Args:
        value: The student's prediction (``"?"`` while it is not made yet).
        name: The prediction's variable name, for the message.
        options: Each letter -> its meaning.
    """
    letters = ", ".join(options)
    text = value.strip().strip("()").strip().lower() if isinstance(value, str) else None
    if text == "?":
        fail(
            f"{name} is still '?': write your prediction (one of the letters {letters}) before "
            "you run the check.",
            requirement=f"{name}: one of the letters {letters}",
        )
    if text is None or text not in options:
        fail(
            f"{name} should be one of the letters {letters} as a string "
            f'(for example "{next(iter(options))}"), got {value!r}.',
            requirement=f"{name}: one of the letters {letters}",
        )
    return text


def expect_no_shared_storage(new: torch.nn.Module, old: torch.nn.Module, what: str) -> None:
    """Fail if a parameter or buffer of ``new`` shares memory with one of ``old``.

    A module built *from* another (a conv from a Linear, a folded conv, a copy to fine-tune)
    must own its weights: with a ``view`` or the same tensor, training one changes the other.

    Args:
        new: The student's new module.
        old: The module it was built from.
        what: How to name ``new`` in the message.
    """

    def spans(module: torch.nn.Module) -> list[tuple[str, int, int]]:
        out = []
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if t.numel() == 0:
                continue
            storage = t.untyped_storage()
            out.append((name, storage.data_ptr(), storage.data_ptr() + storage.nbytes()))
        return out

    theirs = spans(old)
    for name, start, end in spans(new):
        for other, o_start, o_end in theirs:
            if start < o_end and o_start < end:
                fail(
                    f"{what}.{name} shares memory with the original module's `{other}` (a view or "
                    f"the same tensor, not a copy): training one would change the other. Copy the "
                    f"values, e.g. `.detach().clone()` (then reshape), or `copy_` them into a new "
                    f"layer's weight under torch.no_grad()."
                )


def backward(loss: torch.Tensor, what: str) -> None:
    """``loss.backward()`` through the student's code; autograd's errors become check messages.

    The usual cause is a forward pass that changes a tensor in place after using it (a weight
    updated with ``.data`` or under ``torch.no_grad()``, an input overwritten): autograd then
    raises a ``RuntimeError`` ("modified by an inplace operation") from deep inside torch.

    Args:
        loss: A scalar computed from the student's output.
        what: How to name the student's module or function in the message.

    Raises:
        CheckFailed: Naming the mistake, instead of autograd's ``RuntimeError``.
    """
    try:
        loss.backward()
    except RuntimeError as exc:
        if "inplace operation" in str(exc):
            fail(
                f"{what}'s forward pass changes a tensor in place after using it (a weight updated "
                "with `.data`, `.mul_()`/`.add_()` or under `torch.no_grad()`, or an input "
                "overwritten), so the backward pass cannot compute the gradients: "
                f'autograd says "{str(exc).splitlines()[0]}".',
                requirement="forward computes the output without changing the weights or the input",
                hint2="compute new tensors (`w = w * 2`, `x = x + 1`) instead of in-place updates "
                "(`w.mul_(2)`, `x += 1`), and leave the module's parameters as they are: an "
                "optimizer changes them, not forward.",
            )
        fail(f"the backward pass through {what} failed: {type(exc).__name__}: {exc}")


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
            weight = torch.linspace(-1, 1, y_t.numel(), dtype=torch.float64).reshape(y_t.shape)
            backward((y_t.double() * weight).sum(), what)
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
        size: How big the case is to read; :func:`judge` reports the smallest failing case.
            ``None``: the number of elements of its tensor arguments (plus 1 per other one).
    """

    args: tuple[Any, ...]
    label: str
    tags: frozenset[str] = field(default_factory=frozenset)
    size: float | None = None

    def reading_size(self) -> float:
        """:attr:`size`, or the default described there."""
        if self.size is not None:
            return self.size
        return float(sum(a.numel() if isinstance(a, torch.Tensor) else 1 for a in self.args))


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


Mistake = tuple[str, Callable[..., Any]] | tuple[str, Callable[..., Any], str]
Pattern = tuple[str, str] | tuple[str, str, str]


def judge(
    fn: Callable[..., Any],
    cases: Sequence[Case],
    *,
    reference: Callable[..., Any],
    compare: Callable[[Any, Any, str], Any],
    mistakes: Sequence[Mistake] = (),
    patterns: Sequence[Pattern] = (),
    forbidden: Mapping[str, str] | Family | Sequence[Family] | None = None,
    why: str = "",
    around: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    requirement: str = "",
    hint: str = "",
    hint2: str = "",
) -> None:
    """Run ``fn`` on every case and fail on the smallest failing one, naming a recognised mistake.

    Args:
        fn: The student's function.
        cases: Fixed edge cases first, then random ones.
        reference: Computes the expected answer from a case's arguments.
        compare: ``compare(got, expected, label)`` raises :class:`CheckFailed` saying what
            differs (e.g. :func:`tensor_compare`); it is also used, with the same tolerance, to
            test whether the answer equals a mistaken version.
        mistakes: ``(hint, mistaken_fn)`` or ``(hint, mistaken_fn, deeper_hint)``:
            ``mistaken_fn`` takes the same arguments and computes (or raises) what that mistake
            gives. The hint is reported only when the student's answer agrees with it on every
            case; the deeper hint is shown on request (:func:`hint` ``(2)``).
        patterns: ``(tag, hint)`` or ``(tag, hint, deeper_hint)``: the hint is reported when the
            answer fails on some cases, all of which carry ``tag``, and passes every case
            without it.
        forbidden: What the exercise forbids: one or more :class:`Family` (enforced by
            behaviour, see :func:`forbidden`), or dotted paths -> why (see :func:`forbid`).
        why: The requirement a forbidden family protects, in the exercise's words.
        around: Extra context (e.g. :func:`guard`) around the student's calls.
        requirement: The requirement the cases test, in the exercise's words (printed with a
            failure).
        hint: A next step when no mistake or pattern is recognised (without the answer).
        hint2: A deeper hint for that case, shown on request; also for a recognised mistake or
            pattern that has no deeper hint of its own.

    Raises:
        CheckFailed: On the smallest failing case, with the recognised mistake when there is one.
    """
    expected = [reference(*c.args) for c in cases]
    outcomes: list[Any] = []
    if isinstance(forbidden, Family):
        forbidden = (forbidden,)
    blocked: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if isinstance(forbidden, Mapping) and forbidden:
        blocked = forbid(fn, forbidden)
    elif forbidden:
        blocked = _forbidden_block([f for f in forbidden if isinstance(f, Family)], why)
    with blocked, around() if around else contextlib.nullcontext():
        for c in cases:
            try:
                outcomes.append(call(fn, *_clone(c.args), describe=c.label))
            except ForbiddenUse as exc:  # a forbidden shortcut: no point in going on
                raise ForbiddenUse(str(exc), requirement=requirement or exc.requirement) from None
            except CheckFailed as exc:
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
    first = min(failures, key=lambda f: f[0].reading_size())[1]  # the smallest input showing it
    for hint_, wrong, *deeper in mistakes:
        if all(agrees(got, _quiet(wrong, c.args), c.label) for c, got in zip(cases, outcomes, strict=True)):
            fail(
                f"{first}\n   Likely mistake: {hint_}",
                requirement=requirement,
                hint2=next(iter(deeper), "") or hint2,
            )
    for tag, hint_, *deeper in patterns:
        if all(tag in c.tags for c, _ in failures) and any(tag not in c.tags for c in cases):
            fail(
                f"{first}\n   Likely mistake: {hint_}",
                requirement=requirement,
                hint2=next(iter(deeper), "") or hint2,
            )
    fail(f"{first}\n   Next step: {hint}" if hint else first, requirement=requirement, hint2=hint2)


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
