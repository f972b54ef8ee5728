"""Convolution and pooling written from scratch (sections 14.1, 14.2, 14.4).

Two implementations of the same layer, so the notebooks can show both the idea and the trick:

* :func:`conv2d_loops` slides the kernel with explicit Python loops over output positions:
  slow, but it reads like the formula.
* :func:`conv2d_unfold` gathers every receptive-field patch with ``F.unfold`` ("im2col") and
  does one matrix multiply: the way real libraries turn convolution into GEMM.

Both support multiple channels, bias, stride, padding, dilation and groups, and match
``torch.nn.functional.conv2d`` to float tolerance (``tests/test_ops.py``). Arguments are
validated up front so a mistake gives a ``ValueError`` that says what to change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnbook.geometry import conv_output_size, pool_output_size

IntPair = int | tuple[int, int]


def _pair(name: str, v: IntPair) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in t):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}.")
    return t


def _check_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: int,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], int, int]:
    """Validate conv arguments; return stride, padding, dilation pairs and the output size."""
    if x.ndim != 4:
        raise ValueError(
            f"input must have shape (N, C, H, W), got {tuple(x.shape)}; "
            f"add a batch dimension with x.unsqueeze(0) for a single image."
        )
    if weight.ndim != 4:
        raise ValueError(f"weight must have shape (C_out, C_in/groups, kH, kW), got {tuple(weight.shape)}.")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}.")
    c_in, c_out = x.shape[1], weight.shape[0]
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must divide both input channels ({c_in}) and output channels ({c_out})."
        )
    if weight.shape[1] * groups != c_in:
        raise ValueError(
            f"Channel mismatch: the input has {c_in} channels but the weight expects "
            f"{weight.shape[1] * groups} (weight.shape[1]={weight.shape[1]} x groups={groups}); "
            f"make weight.shape[1] == C_in / groups."
        )
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(
            f"bias must have shape ({c_out},) (one per output channel), got {tuple(bias.shape)}."
        )
    s, p, d = _pair("stride", stride), _pair("padding", padding), _pair("dilation", dilation)
    # conv_output_size raises a clear ValueError for bad strides/dilations and too-large kernels
    h_out, w_out = (conv_output_size(x.shape[2 + a], weight.shape[2 + a], s[a], p[a], d[a]) for a in (0, 1))
    return s, p, d, h_out, w_out


def conv2d_loops(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """2D cross-correlation with explicit loops over output positions (for teaching).

    For each output pixel ``(i, j)`` the input patch starting at ``(i*s, j*s)`` (taps spaced by
    the dilation) is multiplied element-wise by each filter and summed over channels and taps.

    Args:
        x: Input of shape ``(N, C_in, H, W)``.
        weight: Filters of shape ``(C_out, C_in / groups, kH, kW)``.
        bias: Optional bias of shape ``(C_out,)``.
        stride: Step between output positions.
        padding: Zeros added on each side.
        dilation: Spacing between kernel taps.
        groups: Split channels into this many independent groups.

    Returns:
        Output of shape ``(N, C_out, H_out, W_out)``.
    """
    (sh, sw), (ph, pw), (dh, dw), h_out, w_out = _check_conv(
        x, weight, bias, stride, padding, dilation, groups
    )
    n = x.shape[0]
    c_out, cg, kh, kw = weight.shape
    xp = F.pad(x, (pw, pw, ph, ph))
    out = x.new_zeros(n, c_out, h_out, w_out)
    per_group = c_out // groups
    for i in range(h_out):
        for j in range(w_out):
            # the receptive field of output (i, j): (N, C_in, kH, kW)
            patch = xp[
                :, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw
            ]
            for g in range(groups):
                p = patch[:, g * cg : (g + 1) * cg]  # (N, Cg, kH, kW)
                wg = weight[g * per_group : (g + 1) * per_group]  # (Cout/g, Cg, kH, kW)
                out[:, g * per_group : (g + 1) * per_group, i, j] = (p[:, None] * wg[None]).sum(dim=(2, 3, 4))
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def conv2d_unfold(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """2D cross-correlation as one batched matrix multiply over unfolded patches (im2col).

    Same arguments, shapes and result as :func:`conv2d_loops`.
    """
    s, p, d, h_out, w_out = _check_conv(x, weight, bias, stride, padding, dilation, groups)
    n = x.shape[0]
    c_out, cg, kh, kw = weight.shape
    # cols: (N, C_in*kH*kW, L) with L = H_out*W_out; channel-major, so groups are contiguous
    cols = F.unfold(x, (kh, kw), dilation=d, padding=p, stride=s)
    cols = cols.view(n, groups, cg * kh * kw, h_out * w_out)
    wmat = weight.view(groups, c_out // groups, cg * kh * kw)
    out = torch.einsum("gok,ngkl->ngol", wmat, cols).reshape(n, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def correlate1d(signal: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid 1D cross-correlation: ``out[n] = sum_k signal[n + k] * kernel[k]``.

    Args:
        signal: Shape ``(L,)``.
        kernel: Shape ``(K,)`` with ``K <= L``.

    Returns:
        Shape ``(L - K + 1,)``.
    """
    if signal.ndim != 1 or kernel.ndim != 1:
        raise ValueError(f"expected 1D tensors, got shapes {tuple(signal.shape)} and {tuple(kernel.shape)}.")
    if len(kernel) > len(signal):
        raise ValueError(f"kernel ({len(kernel)}) is longer than the signal ({len(signal)}).")
    return signal.unfold(0, len(kernel), 1) @ kernel


def convolve1d(signal: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid 1D *true* convolution: cross-correlation with the kernel flipped.

    Matches ``numpy.convolve(signal, kernel, mode="valid")``.
    """
    return correlate1d(signal, kernel.flip(0))


def convolve2d(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid 2D true convolution of one channel: flip the kernel in both axes, then correlate.

    Args:
        image: Shape ``(H, W)``.
        kernel: Shape ``(kH, kW)``.

    Returns:
        Shape ``(H - kH + 1, W - kW + 1)``.
    """
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(
            f"expected 2D tensors (H, W) and (kH, kW), got {tuple(image.shape)} and {tuple(kernel.shape)}."
        )
    return conv2d_unfold(image[None, None], kernel.flip(0, 1)[None, None])[0, 0]


def _check_pool(
    x: torch.Tensor, kernel: IntPair, stride: IntPair | None, padding: IntPair
) -> tuple[tuple[int, int], ...]:
    if x.ndim != 4:
        raise ValueError(f"input must have shape (N, C, H, W), got {tuple(x.shape)}.")
    k = _pair("kernel_size", kernel)
    s = k if stride is None else _pair("stride", stride)
    p = _pair("padding", padding)
    for axis in (0, 1):
        pool_output_size(x.shape[2 + axis], k[axis], s[axis], p[axis])
    return k, s, p


def _pool_windows(
    x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], fill: float
) -> tuple[torch.Tensor, int, int]:
    n, c, h, w = x.shape
    xp = F.pad(x, (p[1], p[1], p[0], p[0]), value=fill)
    win = xp.unfold(2, k[0], s[0]).unfold(3, k[1], s[1])  # (N, C, H_out, W_out, kH, kW)
    return win.reshape(*win.shape[:4], -1), win.shape[2], win.shape[3]


def max_pool2d(
    x: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0
) -> torch.Tensor:
    """Max pooling from scratch: the largest value in each window.

    Args:
        x: Input of shape ``(N, C, H, W)``.
        kernel_size: Window size.
        stride: Step; defaults to the window size.
        padding: Implicit ``-inf`` padding on each side (at most half the window).

    Returns:
        Shape ``(N, C, H_out, W_out)``.
    """
    k, s, p = _check_pool(x, kernel_size, stride, padding)
    win, _, _ = _pool_windows(x, k, s, p, float("-inf"))
    return win.amax(dim=-1)


def avg_pool2d(
    x: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0
) -> torch.Tensor:
    """Average pooling from scratch (zero padding counted, as in PyTorch's default).

    Args:
        x: Input of shape ``(N, C, H, W)``.
        kernel_size: Window size.
        stride: Step; defaults to the window size.
        padding: Zero padding on each side (at most half the window).

    Returns:
        Shape ``(N, C, H_out, W_out)``.
    """
    k, s, p = _check_pool(x, kernel_size, stride, padding)
    win, _, _ = _pool_windows(x, k, s, p, 0.0)
    return win.mean(dim=-1)


def global_avg_pool2d(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: ``(N, C, H, W) -> (N, C)``, one mean per feature map."""
    if x.ndim != 4:
        raise ValueError(f"input must have shape (N, C, H, W), got {tuple(x.shape)}.")
    return x.mean(dim=(2, 3))
