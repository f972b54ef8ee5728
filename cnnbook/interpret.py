"""Looking inside a trained CNN: filters, feature maps, Grad-CAM, activation maximisation (14.10).

All functions work on any ``nn.Module`` and address layers by their dotted name from
``model.named_modules()`` (e.g. ``"layer4"`` or ``"layer4.1.conv2"`` in a torchvision ResNet).
Hooks are always removed before a function returns, including when the forward pass raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.modules import get_layer  # re-exported (its home is cnnbook.modules)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``nn.Conv2d`` in registration order (the layer that sees raw pixels).

    Args:
        model: Any CNN.

    Returns:
        ``(name, module)``.

    Raises:
        ValueError: If the model has no ``Conv2d``.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{type(model).__name__} contains no nn.Conv2d layer.")


def last_conv_name(model: nn.Module) -> str:
    """Name of the last ``nn.Conv2d`` in registration order (a common Grad-CAM target).

    Args:
        model: Any CNN.

    Returns:
        The dotted name.

    Raises:
        ValueError: If the model has no ``Conv2d``.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise ValueError(f"{type(model).__name__} contains no nn.Conv2d layer.")
    return names[-1]


@contextmanager
def capture_outputs(
    model: nn.Module, names: Sequence[str], detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Context manager that records the outputs of the named layers during forward passes.

    The hooks are removed when the ``with`` block ends, also if it raises::

        with capture_outputs(model, ["layer1", "layer4"]) as out:
            model(x)
        out["layer4"].shape  # (N, 512, H/32, W/32)

    Args:
        model: Any model.
        names: Layer names to record (each output must be a tensor).
        detach: Store detached tensors (``False`` keeps them in the autograd graph).

    Yields:
        A dict that fills with ``name -> output`` (the latest call wins).
    """
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(key: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"Layer {key!r} returns {type(output).__name__}, not a tensor; "
                    "pick a layer whose output is a single tensor."
                )
            store[key] = output.detach() if detach else output

        return hook

    try:
        for name in names:
            handles.append(get_layer(model, name).register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def feature_maps(model: nn.Module, x: torch.Tensor, layers: str | Sequence[str]) -> dict[str, torch.Tensor]:
    """Run ``model`` once (no gradients) and return the outputs of the named layers.

    Args:
        model: Any model; it is used as is (call ``model.eval()`` first for inference).
        x: Input batch ``(N, C, H, W)``.
        layers: One layer name or several.

    Returns:
        ``{name: (N, C_l, H_l, W_l)}`` for each requested layer, in request order.

    Raises:
        ValueError: If a name is unknown or ``x`` is not 4-D.
    """
    if x.ndim != 4:
        raise ValueError(
            f"x must be a batch (N, C, H, W); got {tuple(x.shape)}. Use x[None] for a single image."
        )
    names = [layers] if isinstance(layers, str) else list(layers)
    with torch.no_grad(), capture_outputs(model, names) as store:
        model(x)
    return {n: store[n] for n in names}


class _LayerReached(Exception):
    """Raised by :func:`layer_output`'s hook to stop the forward pass early."""


def layer_output(model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` only as far as layer ``name`` and return that layer's output.

    The forward pass is cut short by an exception raised from a forward hook right after the
    layer runs, so the layers behind it cost nothing (activation maximisation of a middle
    layer runs about twice as fast). The output keeps its autograd graph; the hook is removed
    in all cases.

    Args:
        model: Any model.
        name: Layer name.
        x: The model's input.

    Returns:
        The layer's output.

    Raises:
        ValueError: If the layer is unknown or does not run during the forward pass.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        store["out"] = output
        raise _LayerReached

    handle = get_layer(model, name).register_forward_hook(hook)
    try:
        model(x)
    except _LayerReached:
        pass
    finally:
        handle.remove()
    if "out" not in store:
        raise ValueError(f"Layer {name!r} did not run during the forward pass of {type(model).__name__}.")
    return store["out"]


def _scale_minmax(cam: torch.Tensor) -> torch.Tensor:
    """Per-image ``(x - min) / (max(x - min) + 1e-7)`` over the last two dimensions."""
    flat = cam.flatten(1)
    cam = cam - flat.min(dim=1).values.view(-1, 1, 1)
    return cam / (cam.flatten(1).max(dim=1).values.view(-1, 1, 1) + 1e-7)


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: str,
    target_class: int | Sequence[int] | None = None,
    upsample: bool = True,
) -> torch.Tensor:
    r"""Grad-CAM heat maps (Selvaraju et al., 2017) for one class per image.

    With activations :math:`A^k` of the target layer and class score :math:`y^c` (the logit),
    the weights are the spatially averaged gradients
    :math:`\alpha_k^c = \frac{1}{Z}\sum_{i,j} \partial y^c / \partial A^k_{ij}` and the map is
    :math:`\mathrm{ReLU}(\sum_k \alpha_k^c A^k)`. Each map is min-max scaled to ``[0, 1]``,
    resized bilinearly to the input size and scaled again, the same steps as the ``grad-cam``
    package (``pytorch_grad_cam.GradCAM``).

    The gradient is captured with a tensor hook on the layer's output, which (unlike a module
    backward hook) is safe when later layers modify that output in place. Only the input
    receives a gradient, so the parameters' ``.grad`` fields are left as they were.

    Args:
        model: A classifier returning logits ``(N, num_classes)``; it is put in eval mode.
        x: Input batch ``(N, C, H, W)`` (already preprocessed for the model).
        target_layer: Name of a layer with 4-D output, usually the last conv stage.
        target_class: Class index for every image, one index per image, or ``None`` for each
            image's top prediction.
        upsample: Resize to the input's ``(H, W)``; ``False`` returns the raw (unscaled)
            ``ReLU`` map at the layer's resolution.

    Returns:
        ``(N, H, W)`` heat maps in ``[0, 1]`` (or ``(N, H_l, W_l)`` raw maps).

    Raises:
        ValueError: For a non-4-D input, an unknown layer, a wrong number of classes, or a
            layer whose output is not ``(N, C, H, W)``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be a batch (N, C, H, W); got {tuple(x.shape)}.")
    model.eval()
    layer = get_layer(model, target_layer)
    saved: dict[str, torch.Tensor] = {}

    def keep_grad(grad: torch.Tensor) -> None:
        saved["grad"] = grad.detach()

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"Layer {target_layer!r} returns {type(output).__name__}, "
                "not a tensor; pick a layer with a single (N, C, H, W) output."
            )
        saved["act"] = output.detach().clone()  # later in-place ops must not change it
        output.register_hook(keep_grad)

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            # Gradients flow to the input only: the parameters' .grad stay untouched.
            x = x.detach().requires_grad_(True)
            logits = model(x)
            if logits.ndim != 2:
                raise ValueError(f"Model output must be logits (N, classes); got {tuple(logits.shape)}.")
            if target_class is None:
                classes = logits.argmax(dim=1)
            elif isinstance(target_class, int):
                classes = torch.full((len(x),), target_class, dtype=torch.long)
            else:
                classes = torch.as_tensor(list(target_class), dtype=torch.long)
                if len(classes) != len(x):
                    raise ValueError(f"Got {len(classes)} target classes for {len(x)} images.")
            score = logits.gather(1, classes.view(-1, 1).to(logits.device)).sum()
            score.backward(inputs=[x])
    finally:
        handle.remove()
    act, grad = saved["act"], saved.get("grad")
    if act.ndim != 4 or grad is None:
        raise ValueError(
            f"Layer {target_layer!r} must produce a 4-D map on the path to the "
            f"logits; got output shape {tuple(act.shape)}."
        )
    weights = grad.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    cam = F.relu((weights * act).sum(dim=1))  # (N, H_l, W_l)
    if not upsample:
        return cam
    cam = F.interpolate(
        _scale_minmax(cam)[:, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False
    )[:, 0]
    return _scale_minmax(cam)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel of ``(N, C, H, W)`` with a separable Gaussian (reflect padding).

    Args:
        x: Images ``(N, C, H, W)``.
        sigma: Standard deviation in pixels (``<= 0`` returns ``x``).

    Returns:
        The blurred images, same shape.
    """
    if sigma <= 0:
        return x
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


@dataclass
class ActMaxResult:
    """Output of :func:`activation_maximization`.

    Attributes:
        image: ``(3, H, W)`` synthesised image in ``[0, 1]``.
        history: Mean activation of the channel after each step (for a convergence check).
        start: Mean activation of the channel on the starting image.
    """

    image: torch.Tensor
    history: list[float] = field(default_factory=list)
    start: float = 0.0


def activation_maximization(
    model: nn.Module,
    layer: str,
    channel: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    size: int = 128,
    steps: int = 128,
    lr: float = 0.05,
    jitter: int = 8,
    blur_every: int = 4,
    blur_sigma: float = 0.6,
    decay: float = 1e-3,
    seed: int = 0,
) -> ActMaxResult:
    r"""Synthesise an image that strongly activates one channel, by gradient ascent on pixels.

    The image lives in pixel space (``[0, 1]``) and is normalised with ``mean``/``std`` before
    each forward pass, so the model sees inputs like its training data. Plain ascent produces
    high-frequency noise; three standard regularisers make structure visible instead:

    * **jitter**: shift the image by a random offset of up to ``jitter`` pixels each step, so
      the pattern must work at every position (no pixel-exact adversarial noise);
    * **blur**: every ``blur_every`` steps, smooth with a Gaussian of ``blur_sigma`` pixels;
    * **decay**: shrink the image towards mid-grey by a factor ``1 - decay`` each step
      (an L2 penalty), and clip to ``[0, 1]``.

    The objective is the mean of channel ``channel`` of layer ``layer``'s output,
    :math:`\max_x \frac{1}{HW}\sum_{i,j} a_{c,i,j}(x)`.

    Args:
        model: A CNN; it is put in eval mode and its parameters are not changed.
        layer: Layer name whose output is ``(1, C, H, W)``.
        channel: Channel index in that output.
        mean: Per-channel mean used by the model's preprocessing.
        std: Per-channel standard deviation used by the model's preprocessing.
        size: Side of the square image.
        steps: Gradient-ascent steps.
        lr: Adam learning rate on the pixels.
        jitter: Maximum random shift in pixels (0 disables).
        blur_every: Blur period in steps (0 disables).
        blur_sigma: Blur strength in pixels.
        decay: Per-step shrink towards grey (0 disables).
        seed: Seed for the starting noise and the jitter offsets.

    Returns:
        An :class:`ActMaxResult` with the image and the activation history.

    Raises:
        ValueError: For an unknown layer or a channel out of range.
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    m = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    img = (0.5 + 0.05 * torch.randn(1, 3, size, size, generator=gen)).to(device)
    img.requires_grad_(True)
    opt = torch.optim.Adam([img], lr=lr)
    grads_before = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    result = ActMaxResult(image=img.detach())
    try:
        with torch.no_grad():
            first = layer_output(model, layer, (img - m) / s)
        _check_channel(first, layer, channel)
        result.start = first[0, channel].mean().item()
        for step in range(steps):
            dx, dy = (
                torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist() if jitter > 0 else (0, 0)
            )
            shifted = torch.roll(img, shifts=(dy, dx), dims=(2, 3))
            opt.zero_grad()
            loss = -layer_output(model, layer, (shifted - m) / s)[0, channel].mean()
            loss.backward()
            opt.step()
            with torch.no_grad():
                if decay > 0:
                    img.sub_(0.5).mul_(1.0 - decay).add_(0.5)
                if blur_every > 0 and (step + 1) % blur_every == 0:
                    img.copy_(gaussian_blur(img, blur_sigma))
                img.clamp_(0.0, 1.0)
            result.history.append(-loss.item())
    finally:
        for p, flag in zip(model.parameters(), grads_before, strict=True):
            p.requires_grad_(flag)
    result.image = img.detach()[0].cpu()
    return result


def _check_channel(output: torch.Tensor, layer: str, channel: int) -> None:
    if output.ndim != 4:
        raise ValueError(
            f"Layer {layer!r} output has shape {tuple(output.shape)}; "
            "activation maximisation needs a (N, C, H, W) feature map."
        )
    if not 0 <= channel < output.shape[1]:
        raise ValueError(
            f"channel {channel} is out of range for layer {layer!r} with {output.shape[1]} channels."
        )


def total_variation(image: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels (a high-frequency measure).

    Args:
        image: ``(C, H, W)`` or ``(N, C, H, W)``.

    Returns:
        The mean of ``|x[..., i+1, j] - x[..., i, j]|`` and ``|x[..., i, j+1] - x[..., i, j]|``.
    """
    dh = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    dw = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    return float((dh + dw) / 2)
