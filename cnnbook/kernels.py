"""Classic hand-designed image filters and how to apply them (sections 14.1, 14.3).

Before networks learned their filters, image processing designed them by hand. The same
sliding dot product runs both; these kernels make good first examples because you can predict
what each one does to a photo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """A normalised 2D Gaussian blur kernel.

    Args:
        size: Odd side length.
        sigma: Standard deviation in pixels.

    Returns:
        Shape ``(size, size)``, entries summing to 1.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}.")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}.")
    ax = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return k / k.sum()


def box_kernel(size: int = 3) -> torch.Tensor:
    """A box (mean) blur of shape ``(size, size)`` whose entries sum to 1."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}.")
    return torch.full((size, size), 1.0 / (size * size))


def classic_kernels() -> dict[str, torch.Tensor]:
    """The textbook filters, each of shape ``(3, 3)`` except the 5x5 Gaussian.

    Returns:
        Mapping name -> kernel: ``identity``, ``box blur``, ``gaussian``, ``sobel x`` (responds
        to vertical edges: brightness changing left to right), ``sobel y`` (horizontal edges),
        ``laplacian`` (second derivative: edges in every direction), ``sharpen``.
    """
    identity = torch.zeros(3, 3)
    identity[1, 1] = 1.0
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    return {
        "identity": identity,
        "box blur": box_kernel(3),
        "gaussian": gaussian_kernel(5, 1.0),
        "sobel x": sobel_x,
        "sobel y": sobel_x.T.contiguous(),
        "laplacian": laplacian,
        "sharpen": identity - laplacian,  # boost the centre against its 4 neighbours
    }


def apply_kernel(image: torch.Tensor, kernel: torch.Tensor, padding_mode: str = "reflect") -> torch.Tensor:
    """Filter every channel of an image with the same 2D kernel, keeping its size.

    Args:
        image: Shape ``(C, H, W)`` or ``(H, W)``.
        kernel: Shape ``(kH, kW)`` with odd sides.
        padding_mode: How to fill the border: ``"reflect"``, ``"replicate"``, ``"circular"``
            or ``"zeros"``.

    Returns:
        Filtered image with the same shape as ``image``.
    """
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be 2D with odd sides, got shape {tuple(kernel.shape)}.")
    squeeze = image.ndim == 2
    img = image[None] if squeeze else image
    if img.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W) or (H, W), got {tuple(image.shape)}.")
    c = img.shape[0]
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    mode = "constant" if padding_mode == "zeros" else padding_mode
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"Unknown padding_mode {padding_mode!r}; use reflect, replicate, circular or zeros.")
    if mode == "reflect" and (ph >= img.shape[1] or pw >= img.shape[2]):
        raise ValueError(
            f"image {tuple(img.shape[1:])} is too small to reflect-pad for a "
            f"{tuple(kernel.shape)} kernel; use padding_mode='zeros'."
        )
    x = F.pad(img[None], (pw, pw, ph, ph), mode=mode)
    w = kernel.to(img.dtype).expand(c, 1, *kernel.shape)
    out = F.conv2d(x, w, groups=c)[0]  # depthwise: the kernel filters each channel alone
    return out[0] if squeeze else out


def gradient_magnitude(image: torch.Tensor) -> torch.Tensor:
    """Edge strength ``sqrt(Gx^2 + Gy^2)`` from the two Sobel filters.

    Args:
        image: Shape ``(C, H, W)`` or ``(H, W)``; colour images are averaged to gray first.

    Returns:
        Shape ``(H, W)``.
    """
    gray = image.mean(0) if image.ndim == 3 else image
    k = classic_kernels()
    gx, gy = apply_kernel(gray, k["sobel x"]), apply_kernel(gray, k["sobel y"])
    return torch.sqrt(gx**2 + gy**2)
