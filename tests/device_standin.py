"""A pretend accelerator for device-placement tests on a CPU-only machine (issue 18).

:class:`PretendAccelerator` makes code believe a CUDA GPU or an Apple MPS device is present and
checks the rules a real one enforces, while every tensor stays a real CPU tensor so forward
*and* backward passes run (``FakeTensorMode`` and the ``meta`` device cannot: backward needs a
real CUDA context there, and ``meta`` tensors hold no values).

How: a ``TorchDispatchMode`` sees every ATen operation. A tensor *moved to* or *created on* the
pretend device (``aten._to_copy``/factory calls with ``device=cuda|mps``; the device argument
is rewritten to the CPU) is **tagged**, and so is every result of an operation on a tagged
tensor. Python code asking ``tensor.device`` (``is_cuda``, ``.to``, ``.cpu``, ``.data``) gets
the pretend answer for tagged tensors. The mode then raises

* :class:`DeviceMixError` when an operation mixes tagged tensors with untagged ones that are not
  0-dimensional (a real GPU raises "Expected all tensors to be on the same device"; CPU
  scalars, indices of advanced indexing and cross-device ``copy_`` are allowed, as on a GPU);
* :class:`Float64OnDeviceError` when a tagged tensor is float64 (Apple's MPS has no float64:
  "Cannot convert a MPS Tensor to float64"); the guard is on for both kinds of device, since
  code that runs on CUDA should run on a Mac too.

``torch.cuda.is_available`` / ``torch.backends.mps.is_available`` answer yes,
``torch.cuda.get_device_capability`` answers the ``capability`` given, ``torch.autocast`` on
the pretend device runs CPU autocast in the same dtype (so float16/bfloat16 flow through the
code as on the card) and is recorded in :attr:`PretendAccelerator.autocasts`, and
``torch.cuda.synchronize`` / ``torch.mps.synchronize`` / ``torch.accelerator.synchronize`` are
recorded in :attr:`PretendAccelerator.syncs`. ``Tensor.numpy`` (and so ``np.asarray`` and
matplotlib) raises ``TypeError`` on a device tensor, as on the hardware.
:attr:`PretendAccelerator.device_ops` counts the operations that ran on the device.
``torch.load(..., map_location=<the device>)`` loads onto the pretend device.
``pin_memory`` is a recorded no-op; ``torch.accelerator.current_stream`` is a stream that never
captures (Adam's step asks). ``GradScaler.unscale_`` may make float64 (torch itself takes the
scale's reciprocal in float64 on CUDA; the scaler only runs with float16, never on MPS).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import torch
import torch._dynamo  # noqa: F401  (imported before the patches: it reads the real functions)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.weak import WeakTensorKeyDictionary

aten = torch.ops.aten


class DeviceMixError(RuntimeError):
    """Tensors on the pretend device met tensors left on the CPU."""


class Float64OnDeviceError(RuntimeError):
    """A float64 tensor on the pretend device (MPS has no float64)."""


# Operations a real GPU lets take CPU tensors beside device tensors.
_MIXING_ALLOWED = {
    aten.copy_.default,  # dst.copy_(src) copies across devices
    aten._to_copy.default,  # one input: the move itself
    aten.index.Tensor,  # x[idx] with CPU indices
    aten.index_put_.default,
    aten._index_put_impl_.default,
    aten.set_.source_Tensor,  # param.data = other (shallow)
}
_FLOAT64 = (torch.float64, torch.complex128)


def _tensors(tree: Any, out: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """The tensors in an operation's arguments or results (nested tuples, lists and dicts).

    A plain walk: ``torch.utils._pytree.tree_flatten`` made the stand-in several times slower
    on small models, where it runs for every operation.
    """
    out = [] if out is None else out
    if isinstance(tree, torch.Tensor):
        out.append(tree)
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            _tensors(item, out)
    elif isinstance(tree, dict):
        for item in tree.values():
            _tensors(item, out)
    return out


class PretendAccelerator(TorchDispatchMode):
    """Run code as if ``kind`` ("cuda" or "mps") were present; see the module docstring.

    Args:
        kind: "cuda" or "mps".
        capability: What ``torch.cuda.get_device_capability`` answers (CUDA only).

    Use as a context manager; tensors tagged inside stay tagged while they live.
    """

    def __init__(self, kind: str = "cuda", capability: tuple[int, int] = (8, 0)) -> None:
        super().__init__()
        if kind not in ("cuda", "mps"):
            raise ValueError(f"kind must be 'cuda' or 'mps'; got {kind!r}.")
        self.kind = kind
        self.device = torch.device(kind)
        self.capability = capability
        self.tags: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
        self.syncs: list[str] = []
        self.autocasts: list[tuple[str, torch.dtype | None, bool]] = []
        self.pinned = 0
        self.device_ops = 0  # ATen operations that ran with an input on the pretend device
        self._to_cpu = False
        self._in_grad_scaler = False
        self._patches = contextlib.ExitStack()

    # ----------------------------------------------------------------------------- tags
    def on_device(self, t: torch.Tensor) -> bool:
        """Whether ``t`` lives on the pretend device."""
        return t in self.tags

    def _tag(self, out: Any) -> Any:
        for t in _tensors(out):
            if t.dtype in _FLOAT64 and not self._in_grad_scaler:
                raise Float64OnDeviceError(
                    f"a float64 tensor {tuple(t.shape)} on {self.kind}: MPS has no float64 "
                    "('Cannot convert a MPS Tensor to float64'); use float32 on the device or "
                    "float64 on the CPU"
                )
            self.tags[t] = True
        return out

    def _untag(self, out: Any) -> Any:
        for t in _tensors(out):
            self.tags.pop(t, None)
        return out

    def _is_target(self, device: Any) -> bool:
        return device is not None and torch.device(device).type == self.kind

    # ----------------------------------------------------------------------------- dispatch
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        target = kwargs.get("device")
        if self._is_target(target):  # created on, or moved to, the pretend device
            kwargs["device"] = torch.device("cpu")
            return self._tag(func(*args, **kwargs))
        if self._to_cpu and func is aten._to_copy.default:  # .cpu() / .to("cpu"): leaves the device
            return self._untag(func(*args, **kwargs))
        inputs = _tensors((args, kwargs))
        tagged = [t for t in inputs if self.on_device(t)]
        self.device_ops += bool(tagged)
        if tagged and func not in _MIXING_ALLOWED:
            stray = [t for t in inputs if not self.on_device(t) and t.dim() > 0]
            if stray:
                shapes = ", ".join(str(tuple(t.shape)) for t in stray[:3])
                raise DeviceMixError(
                    f"{func}: tensors on {self.kind} mixed with CPU tensor(s) of shape {shapes}; "
                    "move every tensor and module the step meets to the model's device"
                )
        out = func(*args, **kwargs)
        if func is aten.copy_.default:
            return out  # dst.copy_(src): the destination keeps its place
        return self._tag(out) if tagged else out

    # ----------------------------------------------------------------------------- patches
    def __enter__(self) -> PretendAccelerator:
        p = self._patches
        tags, dev = self.tags, self.device
        real_device = torch._C.TensorBase.device
        real_data = torch._C.TensorBase.data
        real_to, real_cpu = torch.Tensor.to, torch.Tensor.cpu
        mode = self

        def device_of(t: torch.Tensor) -> torch.device:
            return dev if t in tags else real_device.__get__(t)

        def move(t: torch.Tensor, device: torch.device, dtype=None, non_blocking=False, fmt=None):
            # aten._to_copy directly: Tensor.to would ask the CUDA runtime for the current GPU.
            # (Other _to_copy calls name the CPU too, for dtype or layout changes in place.)
            mode._to_cpu = device.type == "cpu"
            try:
                return aten._to_copy.default(
                    t,
                    dtype=dtype or t.dtype,
                    device=device,
                    non_blocking=non_blocking,
                    memory_format=fmt or torch.preserve_format,
                )
            finally:
                mode._to_cpu = False

        def to(t: torch.Tensor, *args, **kwargs):
            copy = kwargs.pop("copy", False)
            if args and isinstance(args[0], torch.Tensor):  # t.to(other): other's device and dtype
                args = (device_of(args[0]), args[0].dtype, *args[1:])
            target, dtype, non_blocking, fmt = torch._C._nn._parse_to(*args, **kwargs)
            if target is not None and (target.type == mode.kind or (target.type == "cpu" and t in tags)):
                return move(t, target, dtype, non_blocking, fmt)
            return real_to(t, *args, copy=copy, **kwargs)

        def cpu(t: torch.Tensor, *args, **kwargs):
            return move(t, torch.device("cpu")) if t in tags else real_cpu(t, *args, **kwargs)

        real_tensor, real_as_tensor = torch.tensor, torch.as_tensor

        def tensor(data, *args, device=None, requires_grad=False, **kwargs):
            if device is not None and torch.device(device).type == mode.kind:
                return move(real_tensor(data, *args, **kwargs), torch.device(device)).requires_grad_(
                    requires_grad
                )
            return real_tensor(data, *args, device=device, requires_grad=requires_grad, **kwargs)

        def as_tensor(data, dtype=None, device=None):
            if device is not None and torch.device(device).type == mode.kind:
                return move(real_as_tensor(data, dtype=dtype), torch.device(device))
            return real_as_tensor(data, dtype=dtype, device=device)

        def get_data(t: torch.Tensor) -> torch.Tensor:
            d = real_data.__get__(t)
            if t in tags:
                tags[d] = True
            return d

        def set_data(t: torch.Tensor, value: torch.Tensor) -> None:
            real_data.__set__(t, value)
            if value in tags:
                tags[t] = True
            else:
                tags.pop(t, None)

        real_load = torch.load

        def load(f, map_location=None, *args, **kwargs):
            # torch.load(..., map_location="mps") would build real device storages: load on the
            # CPU and move the tensors to the pretend device (where the hardware restores them)
            if isinstance(map_location, (str, torch.device)) and mode._is_target(map_location):
                obj = real_load(f, "cpu", *args, **kwargs)
                return tree_map(lambda t: move(t, dev) if isinstance(t, torch.Tensor) else t, obj)
            return real_load(f, map_location, *args, **kwargs)

        real_numpy = torch.Tensor.numpy

        def numpy(t: torch.Tensor, *, force: bool = False):
            # also np.asarray(t) and matplotlib, through Tensor.__array__
            if t in tags and not force:
                raise TypeError(
                    f"can't convert {mode.kind}:0 device type tensor to numpy. Use Tensor.cpu() to "
                    "copy the tensor to host memory first."
                )
            return real_numpy(t, force=force)

        def pin_memory(t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            mode.pinned += 1
            return t

        real_autocast = torch.autocast

        def autocast(device_type: str, dtype: torch.dtype | None = None, enabled: bool = True, **kw):
            if device_type != mode.kind:
                return real_autocast(device_type, dtype=dtype, enabled=enabled, **kw)
            mode.autocasts.append((device_type, dtype, enabled))
            return real_autocast("cpu", dtype=dtype or torch.float16, enabled=enabled, **kw)

        real_unscale = torch.amp.GradScaler.unscale_

        def unscale_(scaler, optimizer):
            # torch's own float16 path takes a float64 reciprocal of the scale on CUDA (never
            # on MPS, where the scaler is not used): not the code under test
            mode._in_grad_scaler = True
            try:
                return real_unscale(scaler, optimizer)
            finally:
                mode._in_grad_scaler = False

        cuda = self.kind == "cuda"

        def answer(value: Any):
            def fn(*args, **kwargs):
                return value

            return fn

        def record(name: str):
            def fn(*args, **kwargs) -> None:
                mode.syncs.append(name)

            return fn

        class PretendStream:
            """What optimisers ask of the current stream (Adam's graph-capture check)."""

            def is_capturing(self) -> bool:
                return False

            def query(self) -> bool:
                return True

            def synchronize(self) -> None:
                mode.syncs.append(mode.kind)

        def describe(d: torch.device) -> str:
            return f"{d.type}: pretend accelerator"

        patches = [
            (torch.amp.GradScaler, "unscale_", unscale_),
            (torch.Tensor, "device", property(device_of)),
            (torch.Tensor, "data", property(get_data, set_data)),
            (torch.Tensor, "is_cuda", property(lambda t: cuda and t in tags)),
            (torch.Tensor, "is_mps", property(lambda t: not cuda and t in tags)),
            (torch.Tensor, "to", to),
            (torch.Tensor, "cpu", cpu),
            (torch.Tensor, "pin_memory", pin_memory),
            (torch.Tensor, "numpy", numpy),
            (torch, "tensor", tensor),
            (torch, "as_tensor", as_tensor),
            (torch, "load", load),
            (torch, "autocast", autocast),
            (torch.cuda, "is_available", answer(cuda)),
            (torch.cuda, "device_count", answer(int(cuda))),
            (torch.cuda, "_lazy_init", answer(None)),
            (torch.cuda, "current_device", answer(0)),
            (torch.cuda, "get_device_capability", answer(self.capability)),
            (torch.cuda, "synchronize", record("cuda")),
            (torch.mps, "synchronize", record("mps")),
            (torch.accelerator, "synchronize", record(self.kind)),
            (torch.accelerator, "current_stream", answer(PretendStream())),
            (torch.accelerator, "current_device_index", answer(0)),
            (torch.backends.mps, "is_available", answer(not cuda)),
        ]
        for obj, name, value in patches:
            p.enter_context(mock.patch.object(obj, name, value))
        from cnnbook import device

        p.enter_context(mock.patch.object(device, "describe_device", describe))
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._patches.close()


@contextlib.contextmanager
def pretend(kind: str = "cuda", capability: tuple[int, int] = (8, 0)) -> Iterator[PretendAccelerator]:
    """``with pretend("mps") as acc:`` runs the block on a :class:`PretendAccelerator`."""
    with PretendAccelerator(kind, capability) as acc:
        yield acc


def untag_tree(tree: Any) -> Any:
    """Plain copies of the tensors in ``tree`` (to compare results outside the stand-in)."""
    return tree_map(lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, tree)
