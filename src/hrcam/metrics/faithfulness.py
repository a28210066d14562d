"""Faithfulness of saliency maps: does the model's confidence follow the map?

Two families, both batched in torch and both black-box (only the model's outputs are used):

- :func:`deletion_insertion` — deletion and insertion AUC (Petsiuk, Das & Saenko, BMVC 2018,
  "RISE: Randomized Input Sampling for Explanation of Black-box Models");
- :func:`average_drop_increase` — average drop and increase in confidence (Chattopadhay et al.,
  WACV 2018, "Grad-CAM++").

The model
---------
``model_fn(x: Tensor (N, C_in, H, W)) -> Tensor (N, num_classes)`` returns **probabilities**
(softmax already applied), as RISE's evaluation wraps the classifier in ``nn.Softmax``. Pass
``logits=True`` when it returns logits; the softmax is then applied here. It is called under
``torch.no_grad()`` on at most ``batch_size`` images at a time, on the images' device; put a
``torch.nn.Module`` in ``eval()`` mode first. The score of an image is the probability of its
``target`` class.

Images are the tensors the model takes, i.e. **already normalised** (e.g. with the ImageNet mean
and std); every perturbation below happens in that space.

Protocol pinned here (deletion / insertion)
-------------------------------------------
1. The CAM is resized bilinearly to the image size (``align_corners=False``), NaN set to 0, and
   its pixels ranked by value, highest first; ties keep row-major order (stable sort).
2. ``steps`` equal steps (default 224): after step ``i`` the ``floor(i * H * W / steps)``
   top-ranked pixels are changed, all channels of a pixel together. For a 224×224 image that is
   224 pixels per step, RISE's setting; fixing the number of steps rather than the pixels per
   step gives every image size the same fraction axis ``0, 1/steps, ..., 1``.
3. **Deletion** starts from the image and sets changed pixels to **0 in the model's input
   space** (RISE's ``torch.zeros_like`` substrate on the normalised tensor: for mean/std inputs,
   the dataset's mean colour). **Insertion** starts from a **Gaussian-blurred** image
   (kernel 11×11, σ = 5, as RISE's ``gkern(11, 5)``) and copies the image's pixels in. The blur
   here is a normalised separable Gaussian with replicate padding (RISE blurred with zero
   padding, which darkens the border towards 0); this only differs within 5 px of the border.
4. The curve is the target's probability after each of the ``steps + 1`` states (step 0
   included), and the AUC is the trapezoid rule over the fraction of pixels changed, in
   ``[0, 1]`` (RISE's ``auc``). Lower deletion AUC and higher insertion AUC are better.

Cost: ``B * (steps + 1)`` model evaluations per mode, in chunks of ``batch_size`` images, so
memory stays at one chunk whatever ``steps`` is.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.integrate import trapezoid

from ..arrays import resize_maps

__all__ = ["average_drop_increase", "blur_images", "deletion_insertion", "frozen_for_inference"]

ModelFn = Callable[[torch.Tensor], torch.Tensor]
_MODES = ("deletion", "insertion")


# --------------------------------------------------------------------------------------------
# Input checks (the public boundary)
# --------------------------------------------------------------------------------------------


def _check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = (
            f"a {images.dtype} tensor of shape {tuple(images.shape)}"
            if isinstance(images, torch.Tensor)
            else type(images).__name__
        )
        raise ValueError(
            f"images must be a float tensor (B, C, H, W) in the model's input space, got {got}"
        )
    return images


def _check_cams(cams, images: torch.Tensor) -> torch.Tensor:
    """(B, h, w) float32 tensor on the images' device."""
    t = cams if isinstance(cams, torch.Tensor) else torch.as_tensor(np.asarray(cams))
    b = images.shape[0]
    if t.ndim != 3 or t.shape[0] != b or t.shape[1] == 0 or t.shape[2] == 0:
        raise ValueError(
            f"cams must be (B, h, w) = ({b}, h, w), one map per image at any size, got shape "
            f"{tuple(t.shape)}; for (B, 1, h, w) pass cams[:, 0]"
        )
    return t.detach().to(device=images.device, dtype=torch.float32)


def _check_targets(targets, batch: int, device: torch.device) -> torch.Tensor:
    t = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(np.asarray(targets))
    if t.shape != (batch,) or t.is_floating_point() or t.is_complex():
        raise ValueError(
            f"targets must be ({batch},) integer class indices, one per image, got "
            f"{t.dtype} of shape {tuple(t.shape)}"
        )
    if batch and t.min() < 0:
        raise ValueError(f"targets must be class indices >= 0, got {t.min().item()}")
    return t.to(device=device, dtype=torch.long)


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _saliency_at_image_size(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) CAMs resized bilinearly to the image size, non-finite values set to 0."""
    if tuple(cams.shape[1:]) != tuple(size):
        cams = resize_maps(cams, size)
    return torch.nan_to_num(cams, nan=0.0, posinf=0.0, neginf=0.0)


# --------------------------------------------------------------------------------------------
# Model evaluation in chunks
# --------------------------------------------------------------------------------------------


_FROZEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def frozen_for_inference(module: torch.nn.Module, example: torch.Tensor) -> ModelFn:
    """``module`` (in eval mode) traced on ``example`` and frozen by TorchScript — batch norm
    folded into the convolutions, constants propagated — for the thousands of forward passes
    the faithfulness metrics make on a CPU (about a fifth less time than eager PyTorch,
    docs/speed.md). Its probabilities agree with the module's to 1e-5; where tracing fails or
    they would not, or on a GPU, the module itself is returned. Cached per module and input
    shape."""
    if example.device.type != "cpu" or module.training:
        return module
    key = (tuple(example.shape[1:]), example.dtype)
    cache = _FROZEN.setdefault(module, {})
    if key not in cache:
        cache[key] = _freeze(module, example)
    return cache[key]


def _freeze(module: torch.nn.Module, example: torch.Tensor) -> ModelFn:
    import warnings

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracing's notes on Python control flow
            # oneDNN's graph fusion (convolution + activation in one kernel) for TorchScript
            # graphs: a process-wide switch that only TorchScript reads.
            torch.jit.enable_onednn_fusion(True)
            traced = torch.jit.trace(module, example, check_trace=False)  # compared below
            frozen = torch.jit.freeze(traced.eval())
            for _ in range(2):  # the graph executor profiles, then fuses
                frozen(example)
            expected, got = module(example).float(), frozen(example).float()
    except Exception:  # noqa: BLE001 - a module TorchScript cannot trace: run it as it is
        return module
    close = torch.allclose(got.softmax(1), expected.softmax(1), rtol=0, atol=1e-5)
    return frozen if close and got.shape == expected.shape else module


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a channels-last (and not also contiguous) 4-D tensor."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _target_scores(
    model_fn: ModelFn, x: torch.Tensor, targets: torch.Tensor, *, logits: bool
) -> torch.Tensor:
    """Probability of each row's target class, (N,) float64 on the CPU."""
    with torch.no_grad():
        out = model_fn(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model_fn must return a (N, num_classes) tensor for N = {x.shape[0]} images, got {got}"
        )
    if targets.numel() and targets.max() >= out.shape[1]:
        raise ValueError(
            f"targets must be < num_classes = {out.shape[1]} (the width of model_fn's output), "
            f"got {targets.max().item()}"
        )
    if logits:
        out = torch.softmax(out.float(), dim=1)
    return out.gather(1, targets[:, None].to(out.device))[:, 0].double().cpu()


def _perturbation_curves(
    model_fn: ModelFn,
    start: torch.Tensor,
    finish: torch.Tensor | None,
    rank: torch.Tensor,
    counts: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    logits: bool,
) -> torch.Tensor:
    """Scores (B, S) where state s of image b takes ``finish`` on its ``counts[s]`` top pixels.

    ``rank`` (B, H*W): each pixel's position in the CAM's descending order. ``finish=None``
    means zeros. The B * S states are built and scored ``batch_size`` at a time.
    """
    b_total, c, h, w = start.shape
    s_total = counts.numel()
    total = b_total * s_total
    scores = torch.empty(total, dtype=torch.float64)
    # One reused buffer: allocating a fresh (batch, C, H, W) tensor per chunk costs more than
    # filling it. Each image's states are filled together so its start/finish broadcast.
    # In the images' own memory layout: a channels-last input runs the CPU's convolutions
    # ~1.5x faster than the same values laid out contiguously.
    layout = memory_format_of(start if finish is None else finish)
    states = torch.empty(
        (min(batch_size, total), c, h, w),
        dtype=start.dtype,
        device=start.device,
        memory_format=layout,
    )
    changed = torch.empty((states.shape[0], h * w), dtype=torch.bool, device=start.device)
    zero = start.new_zeros(())
    for j0 in range(0, total, batch_size):
        j1 = min(j0 + batch_size, total)
        for b in range(j0 // s_total, (j1 - 1) // s_total + 1):
            lo, hi = max(j0, b * s_total), min(j1, (b + 1) * s_total)
            rows = slice(lo - j0, hi - j0)
            step_counts = counts[lo - b * s_total : hi - b * s_total, None]
            torch.lt(rank[b], step_counts, out=changed[rows])
            other = zero if finish is None else finish[b]
            torch.where(changed[rows].view(-1, 1, h, w), other, start[b], out=states[rows])
        owner = torch.arange(j0, j1, device=start.device) // s_total
        scores[j0:j1] = _target_scores(model_fn, states[: j1 - j0], targets[owner], logits=logits)
    return scores.view(b_total, s_total)


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def blur_images(images: torch.Tensor, *, sigma: float = 5.0, kernel_size: int = 11) -> torch.Tensor:
    """Gaussian blur of a (B, C, H, W) batch, per channel: RISE's insertion start.

    The kernel is ``exp(-x^2 / (2 sigma^2))`` for ``x`` in ``-(kernel_size // 2)..kernel_size //
    2``, normalised to sum 1 and applied along rows then columns, with replicate padding (so a
    constant image stays constant and any image size works). Returns a new tensor, same shape.

    Example::

        >>> x = torch.zeros(1, 1, 1, 3); x[..., 1] = 1.0
        >>> y = blur_images(x, sigma=1.0, kernel_size=3)  # weights e^-.5, 1, e^-.5 over their sum
        >>> [round(v, 4) for v in y.squeeze().tolist()]
        [0.2741, 0.4519, 0.2741]
    """
    images = _check_images(images)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    kernel_size = _check_positive_int(kernel_size, "kernel_size")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    radius = kernel_size // 2
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    # In the images' own type under an autocast too: the baseline is data, not the model's work.
    with torch.autocast(images.device.type, enabled=False):
        out = F.pad(images, (radius, radius, 0, 0), mode="replicate")
        out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        out = F.pad(out, (0, 0, radius, radius), mode="replicate")
        return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def deletion_insertion(
    model_fn: ModelFn,
    images: torch.Tensor,
    cams,
    targets,
    *,
    steps: int = 224,
    batch_size: int = 64,
    blur_sigma: float = 5.0,
    blur_kernel_size: int = 11,
    logits: bool = False,
    modes: Sequence[str] = _MODES,
) -> dict:
    """Deletion and insertion AUC per image (Petsiuk et al., RISE, BMVC 2018).

    Follows the protocol in this module's docstring: pixels ranked by the CAM (resized to the
    image), ``steps`` equal steps, deletion to 0 in the model's input space, insertion from an
    11×11, σ = 5 Gaussian blur, target-class probability, trapezoid AUC over the fraction of
    pixels in ``[0, 1]``.

    Args:
        model_fn: ``(N, C_in, H, W) -> (N, num_classes)`` probabilities (or logits with
            ``logits=True``).
        images: ``(B, C_in, H, W)`` float tensor, already normalised for the model.
        cams: ``(B, h, w)`` tensor or array, one saliency map per image, any size.
        targets: ``(B,)`` class indices whose probability is tracked.
        steps: number of equal steps (``steps + 1`` states per curve); images of fewer than
            ``steps`` pixels use one step per pixel.
        batch_size: most images per ``model_fn`` call.
        blur_sigma, blur_kernel_size: the insertion start's Gaussian blur.
        logits: apply a softmax to ``model_fn``'s output.
        modes: which curves to compute, ``("deletion", "insertion")`` or one of them.

    Returns:
        ``{"deletion_auc": (B,), "insertion_auc": (B,), "curves": {"fraction": (steps + 1,),
        "deletion": (B, steps + 1), "insertion": (B, steps + 1)}}`` as float64 NumPy arrays
        (keys of modes not asked for are left out). The dataset score is the mean of the
        per-image AUCs, so batches can simply be concatenated.

    Example::

        >>> model_fn = lambda x: x.mean(dim=(1, 2, 3))[:, None]   # one "class": mean intensity
        >>> out = deletion_insertion(model_fn, torch.ones(1, 1, 2, 2), torch.rand(1, 2, 2),
        ...                          [0], steps=4, modes=("deletion",))
        >>> out["curves"]["deletion"].tolist(), out["deletion_auc"].tolist()
        ([[1.0, 0.75, 0.5, 0.25, 0.0]], [0.5])
    """
    images = _check_images(images)
    b, _, h, w = images.shape
    saliency = _saliency_at_image_size(_check_cams(cams, images), (h, w))
    targets = _check_targets(targets, b, images.device)
    steps = min(_check_positive_int(steps, "steps"), h * w)  # at least one pixel per step
    batch_size = _check_positive_int(batch_size, "batch_size")
    unknown = set(modes) - set(_MODES)
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {_MODES}, got {tuple(modes)}")

    order = torch.argsort(saliency.reshape(b, -1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=images.device).expand(b, -1))
    counts = torch.arange(steps + 1, device=images.device) * (h * w) // steps
    fraction = (counts.double() / (h * w)).cpu().numpy()
    curves: dict[str, np.ndarray] = {"fraction": fraction}
    out: dict = {}
    with torch.no_grad():
        for mode in _MODES:
            if mode not in modes:
                continue
            if mode == "deletion":
                start, finish = images, None
            else:
                start = blur_images(images, sigma=blur_sigma, kernel_size=blur_kernel_size)
                finish = images
            curve = _perturbation_curves(
                model_fn,
                start,
                finish,
                rank,
                counts,
                targets,
                batch_size=batch_size,
                logits=logits,
            ).numpy()
            curves[mode] = curve
            out[f"{mode}_auc"] = trapezoid(curve, fraction, axis=1)
    out["curves"] = curves
    return out


def average_drop_increase(
    model_fn: ModelFn,
    images: torch.Tensor,
    cams,
    targets,
    *,
    batch_size: int = 64,
    logits: bool = False,
) -> dict:
    """Average drop and increase in confidence (Chattopadhay et al., Grad-CAM++, WACV 2018).

    The explanation map is ``E = image * cam``: the CAM resized bilinearly to the image, NaN set
    to 0, min-max normalised to ``[0, 1]`` per image (a constant CAM becomes 0, so ``E`` is all
    zeros), multiplied into every channel of the model's (normalised) input. With ``Y`` the
    target's probability on the image and ``O`` on ``E``:

    - drop per image ``max(0, Y - O) / Y`` (0 when ``Y = 0``); **average drop** is its mean
      (lower is better);
    - **increase in confidence** is the share of images with ``O > Y`` (higher is better);
    - gain per image ``max(0, O - Y) / (1 - Y)`` (0 when ``Y = 1``); **average gain** is its
      mean (higher is better; the gain Opti-CAM, Zhang et al. 2024, reports).

    Both are fractions; Grad-CAM++ prints them ×100 as percentages.

    Args:
        model_fn, images, cams, targets, batch_size, logits: as in :func:`deletion_insertion`.

    Returns:
        ``{"average_drop": float, "increase_in_confidence": float, "average_gain": float,
        "drop": (B,), "increase": (B,) bool, "gain": (B,), "original_score": (B,),
        "explanation_score": (B,)}``. For a
        dataset, concatenate the per-image arrays over batches and average.

    Example::

        >>> model_fn = lambda x: x.mean(dim=(1, 2, 3))[:, None]
        >>> cam = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])               # 0, 1/4, 1/2, 1
        >>> out = average_drop_increase(model_fn, torch.ones(1, 1, 2, 2), cam, [0])
        >>> out["average_drop"], out["increase_in_confidence"]           # Y = 1, O = 7/16
        (0.5625, 0.0)
    """
    images = _check_images(images)
    b, _, h, w = images.shape
    saliency = _saliency_at_image_size(_check_cams(cams, images), (h, w))
    targets = _check_targets(targets, b, images.device)
    batch_size = _check_positive_int(batch_size, "batch_size")

    flat = saliency.reshape(b, -1)
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    weights = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-30), 0.0).view(b, 1, h, w)

    original = torch.empty(b, dtype=torch.float64)
    explained = torch.empty(b, dtype=torch.float64)
    for i in range(0, b, batch_size):
        chunk = slice(i, i + batch_size)
        original[chunk] = _target_scores(model_fn, images[chunk], targets[chunk], logits=logits)
        explanation = images[chunk] * weights[chunk].to(images.dtype)
        explained[chunk] = _target_scores(model_fn, explanation, targets[chunk], logits=logits)

    drop = torch.where(original > 0, (original - explained).clamp_min(0) / original, 0.0)
    increase = explained > original
    headroom = 1 - original
    gain = torch.where(headroom > 0, (explained - original).clamp_min(0) / headroom, 0.0)
    return {
        "average_drop": float(drop.mean()) if b else float("nan"),
        "increase_in_confidence": float(increase.double().mean()) if b else float("nan"),
        "average_gain": float(gain.mean()) if b else float("nan"),
        "drop": drop.numpy(),
        "increase": increase.numpy(),
        "gain": gain.numpy(),
        "original_score": original.numpy(),
        "explanation_score": explained.numpy(),
    }
