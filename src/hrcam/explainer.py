"""The three parts of the framework joined: one call from images to the refined CAM.

:class:`Explainer` holds a localization network (part 1), an upsampler (part 2) and the
refinement's options (part 3), and is immutable: a changed setting is a new explainer that
shares the networks (:meth:`Explainer.replace`, cheap). Its one call,
:meth:`Explainer.explain`, takes images and returns an :class:`Explanation`: the low-res,
high-res and refined CAMs of each image's target class, the class probabilities and, on
request, every step of the refinement. ``hrcam explain``, ``hrcam evaluate``, the app and the
method registry all go through it, so they give the same maps for the same image.

Example::

    >>> import hrcam
    >>> from skimage import data
    >>> explainer = hrcam.load_model("default")           # EfficientNet-Lite0, offline
    >>> explanation = explainer.explain(data.chelsea())
    >>> tuple(explanation.refined.shape), explanation.target(0).name
    ((1, 224, 224), 'Egyptian cat')

Inside, :meth:`~Explainer.explain` is :meth:`~Explainer.prepare` (images → :class:`ImageBatch`,
the one preprocessing path), :meth:`~Explainer.cams` (parts 1 and 2: one pass of the
localization network, then the upsampler) and :meth:`~Explainer.refine` (part 3, one image at a
time on a CPU, batched on a GPU); each is public for callers that reuse a step (the app re-runs
only the refinement when an option changes).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .arrays import to_numpy
from .backbones.base import Backbone
from .checks import NonFiniteError, ShapeError, count_non_finite
from .io import decode_side, load_image, resize_for_network
from .postprocess import RefineOptions, RefineSteps, one_image, refine_batch
from .upsample import UpsampleInputs, Upsampler, create_upsampler
from .upsample.expansion import ExpansionNetwork

__all__ = [
    "CAMs",
    "ClassScore",
    "Explainer",
    "Explanation",
    "ImageBatch",
    "Target",
    "from_model",
    "maps_record",
]

Target = int | str | Sequence[int | str] | torch.Tensor | None
ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor

# The largest network input hrcam accepts on a side: far above any classifier's training size,
# and a 4096² batch of 8 already needs gigabytes of activations; a 512³ volume, as many.
MAX_INPUT_SIDE = 4096
MAX_VOLUME_SIDE = 512


@dataclass(frozen=True)
class ClassScore:
    """One class of an explanation: its index, its name, the model's probability for it."""

    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class ImageBatch:
    """Images as the explainer's networks take them; made by :meth:`Explainer.prepare`.

    - ``x``: ``(B, C, H, W)`` float32, normalised for the localization network (``C`` its
      input channels: 3 for photographs, often 1 for medical networks);
    - ``pixels``: ``(B, C, H, W)`` float32, the same images in [0, 1] (RGB, or intensity
      windowed to [0, 1]: the guide of the upsampler), on the same device;
    - ``rgb``: ``(B, H, W, 3)`` uint8 NumPy array, the same images as pictures (the refinement's
      masked image, the pipeline figure; gray repeated in the three channels); made from
      ``pixels`` when first read, unless given.

    For a network of volumes every image is a volume: ``x`` and ``pixels`` are
    ``(B, C, D, H, W)`` and ``rgb`` is ``(B, D, H, W)`` uint8, the windowed intensity.
    """

    x: torch.Tensor
    pixels: torch.Tensor
    pictures: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @functools.cached_property
    def rgb(self) -> np.ndarray:
        if self.pictures is not None:
            return self.pictures
        pictures = (self.pixels * 255 + 0.5).to(torch.uint8)
        if pictures.ndim == 5:  # volumes: their first channel's intensity
            return pictures[:, 0].cpu().numpy()
        if pictures.shape[1] != 3:  # gray (or two channels): the first, as RGB
            pictures = pictures[:, :1].expand(-1, 3, -1, -1)
        return pictures.permute(0, 2, 3, 1).cpu().numpy()

    def select(self, index: Sequence[int] | torch.Tensor) -> ImageBatch:
        """The images at ``index`` (a list or a tensor of row numbers)."""
        rows = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        on_device = rows.to(self.x.device)
        pictures = None if self.pictures is None else self.pictures[rows.numpy()]
        return ImageBatch(self.x[on_device], self.pixels[on_device], pictures)

    @classmethod
    def from_normalized(
        cls, x: torch.Tensor, mean: Sequence[float], std: Sequence[float]
    ) -> ImageBatch:
        """A batch from inputs already normalised by ``(rgb - mean) / std`` (e.g. a perturbed
        copy made by a faithfulness metric): ``pixels`` and ``rgb`` are recovered from ``x``."""
        shape = (1, -1) + (1,) * (x.ndim - 2)
        m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(shape)
        s = torch.tensor(std, device=x.device, dtype=x.dtype).view(shape)
        return cls(x, (x * s + m).clamp(0, 1))


@dataclass(frozen=True)
class CAMs:
    """Parts 1 and 2 of a batch (:meth:`Explainer.cams`): ``low_res`` ``(B, h, w)`` at the
    feature resolution, ``high_res`` ``(B, H, W)`` at the input's, ``probabilities`` ``(B, C)``
    (the softmax of the logits) and ``targets`` ``(B,)`` the classes explained."""

    low_res: torch.Tensor
    high_res: torch.Tensor
    probabilities: torch.Tensor
    targets: torch.Tensor

    def select(self, index: Sequence[int] | torch.Tensor) -> CAMs:
        """The same fields for some of the images (rows ``index``)."""
        rows = torch.as_tensor(index, dtype=torch.long, device=self.low_res.device).reshape(-1)
        return CAMs(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class Explanation:
    """What :meth:`Explainer.explain` returns for a batch of ``B`` images.

    - ``low_res``: ``(B, h, w)`` the localization network's exact CAM (part 1);
    - ``high_res``: ``(B, H, W)`` the upsampler's high-resolution CAM (part 2);
    - ``refined``: ``(B, H, W)`` the refined CAM in [0, 1] (part 3; NaN for an image whose
      CAMs were not finite, see ``errors``);
    - ``probabilities``: ``(B, C)``; ``targets``: ``(B,)`` the classes explained;
    - ``images``: ``(B, H, W, 3)`` uint8, the network's input the maps are aligned with;
    - ``steps``: one :class:`~hrcam.postprocess.RefineSteps` per image (every intermediate step
      of the refinement, NumPy) when asked for, else None;
    - ``errors``: per image, None or why it could not be refined.

    Tensors are on the explainer's device. ``H × W`` is the network's input size; resize a map
    to the photograph's own size with :func:`hrcam.upsample_cam`.
    """

    low_res: torch.Tensor
    high_res: torch.Tensor
    refined: torch.Tensor
    probabilities: torch.Tensor
    targets: torch.Tensor
    images: np.ndarray
    class_names: Sequence[str] = field(repr=False)
    steps: tuple[RefineSteps | None, ...] | None = None
    errors: tuple[str | None, ...] = ()

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def target(self, i: int) -> ClassScore:
        """The class explained in image ``i``, with its probability."""
        t = int(self.targets[i])
        return ClassScore(t, self.class_names[t], float(self.probabilities[i, t]))

    def arrays(self, i: int, *, dtype: str = "float32") -> dict[str, np.ndarray]:
        """Image ``i``'s maps as ``hrcam explain`` saves them (``maps.npz``, :func:`maps_record`);
        needs the steps (``explain(..., steps=True)``)."""
        if self.steps is None or self.steps[i] is None:
            raise ValueError("this explanation holds no refinement steps; explain with steps=True")
        return maps_record(
            self.low_res[i],
            self.high_res[i],
            self.steps[i],
            self.probabilities[i],
            int(self.targets[i]),
            dtype,
        )

    def top(self, i: int, k: int = 5) -> list[ClassScore]:
        """The ``k`` most probable classes of image ``i``, most probable first (ties by index)."""
        probs = self.probabilities[i].float().cpu().numpy()
        order = np.argsort(-probs, kind="stable")[: min(k, probs.shape[0])]
        return [ClassScore(int(j), self.class_names[int(j)], float(probs[j])) for j in order]


@dataclass(frozen=True, eq=False)
class Explainer:
    """The three parts of HR-CAM joined; immutable (see the module docstring).

    Args:
        backbone: the localization network (part 1): a GAP + FC classifier behind the
            :class:`~hrcam.Backbone` contract (:func:`from_model` wraps your own).
        upsampler: part 2: an :class:`~hrcam.upsample.Upsampler`, or a name
            (:func:`hrcam.upsample.create_upsampler`): ``"auto"`` (default: the boundary
            upsampler when ``expansion`` has a trained boundary head, else
            :class:`~hrcam.upsample.GuidedUpsampler`, which needs no training), ``"guided"``, ``"boundary"``, ``"paper"`` (the trained ``expansion`` network, the
            paper's) or ``"hed"``.
        expansion: the model's stage-2 network, if it has one: the paper's decoder and, trained
            on object boundaries, its boundary head (kept so that ``replace(upsampler=...)``
            finds them).
        refine_options: part 3's options (default: ``RefineOptions()``, hrcam's preset).
        flip: average every CAM with the mirrored image's (test-time augmentation, twice the
            cost; the probabilities stay the unmirrored image's).
        input_size: ``(H, W)`` or a side the images are resized to (default: the backbone's);
            ``(D, H, W)`` or a side for a network of volumes.
        window: the intensity window ``(centre, width)`` medical scans are read through, in
            their own units (Hounsfield units for CT): default each file's own display window,
            else its 0.5th to 99.5th percentile. Photographs are not windowed.

    The networks are shared, not copied: :meth:`replace` and :meth:`to` keep them, so moving
    one explainer to a GPU moves every explainer made from it.
    """

    backbone: Backbone
    upsampler: Upsampler | str = "auto"
    expansion: ExpansionNetwork | None = None
    refine_options: RefineOptions = field(default_factory=RefineOptions)
    flip: bool = False
    input_size: int | tuple[int, ...] | None = None
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, Backbone):
            raise TypeError(
                f"backbone must be a hrcam.Backbone, got {type(self.backbone).__name__}; wrap a "
                "torchvision or timm classifier with hrcam.from_model(module)"
            )
        if self.expansion is not None:
            self.expansion.check_backbone(self.backbone)
        if isinstance(self.upsampler, str):
            upsampler = create_upsampler(self.upsampler, expansion=self.expansion)
            object.__setattr__(self, "upsampler", upsampler)
        elif not isinstance(self.upsampler, Upsampler):
            raise TypeError(
                "upsampler must be 'auto', 'guided', 'boundary', 'paper', 'hed' or an object "
                "with needs_skips, "
                f"upsample(inputs) and describe() (hrcam.upsample.Upsampler); got "
                f"{type(self.upsampler).__name__}"
            )
        if not isinstance(self.refine_options, RefineOptions):
            raise TypeError(
                f"refine_options must be a RefineOptions, got {type(self.refine_options).__name__}"
            )
        if not isinstance(self.flip, bool):
            raise TypeError(f"flip must be True or False, got {self.flip!r}")
        object.__setattr__(self, "input_size", self._checked_size(self.input_size))
        if self.window is not None:
            ok = isinstance(self.window, (tuple, list)) and len(self.window) == 2
            if not ok or not float(self.window[1]) > 0:
                raise ValueError(
                    f"window must be (centre, width) with a width > 0, got {self.window!r}"
                )
            object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))
        if self.spatial_dims == 3 and self.upsampler.needs_skips:
            raise ValueError(
                f"the {self.upsampler.describe().get('name')} upsampler is 2-D (it reads the "
                "network's stage features); a network of volumes takes the guided upsampler "
                "(upsampler='guided')"
            )

    def _checked_size(self, size) -> tuple[int, ...]:
        if size is None:
            size = self.backbone.input_size
        rank = self.spatial_dims
        sides = [size] * rank if isinstance(size, int) else size
        low = self.backbone.feature_stride
        high = MAX_INPUT_SIDE if rank == 2 else MAX_VOLUME_SIDE
        ok = isinstance(sides, (list, tuple)) and len(sides) == rank
        if ok:
            ok = all(
                isinstance(n, int) and not isinstance(n, bool) and low <= n <= high for n in sides
            )
        if not ok:
            axes = "(height, width)" if rank == 2 else "(depth, height, width)"
            raise ValueError(
                f"input_size must be a side (or {axes}) in [{low}, {high}] pixels (from the "
                f"network's stride to what a CPU's memory holds); got {size!r}"
            )
        return tuple(int(n) for n in sides)

    @property
    def spatial_dims(self) -> int:
        """2 for a network of images, 3 for one of volumes (CT, MRI)."""
        return self.backbone.spatial_dims

    # -- settings ---------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Explainer:
        """A new explainer with ``changes`` (any constructor argument), sharing the networks.

        Example: ``explainer.replace(refine_options=RefineOptions.preset("paper"), flip=True)``.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown explainer setting(s) {unknown}; valid: {valid}")
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The settings behind its maps, for results files and reports (plain JSON values)."""
        return {
            "backbone": dict(self.backbone.config),
            "upsampler": self.upsampler.describe(),
            "refine": dataclasses.asdict(self.refine_options),
            "flip": self.flip,
            "input_size": list(self.input_size),
            "window": None if self.window is None else list(self.window),
        }

    @property
    def class_names(self) -> list[str]:
        return self.backbone.class_names

    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def decode_side(self) -> int:
        """The side JPEG decoding may stop at (:func:`hrcam.io.decode_side`): every front-end
        decodes a file with it, so each sees the same pixels."""
        return decode_side(self.input_size)

    def networks(self) -> list[nn.Module]:
        """The networks it runs: the backbone, and the upsampler or expansion network if they
        are modules (what :meth:`to` and :meth:`eval` move)."""
        found: list[nn.Module] = [self.backbone]
        for part in (self.expansion, self.upsampler):
            if isinstance(part, nn.Module) and all(part is not m for m in found):
                found.append(part)
        return found

    def to(self, device: str | torch.device) -> Explainer:
        """Move the (shared) networks to ``device``; returns this explainer."""
        for network in self.networks():
            network.to(device)
        return self

    def eval(self) -> Explainer:
        """Put the (shared) networks in inference mode (batch norm statistics, no dropout)."""
        for network in self.networks():
            network.eval()
        return self

    # -- classes ----------------------------------------------------------------------------------
    def class_index(self, target: int | str) -> int:
        """A class by index or by name (any case; ``"12"`` is index 12); ``ValueError`` naming
        the closest names for an unknown one."""
        if isinstance(target, bool):
            raise TypeError("a class is an index or a name, not a bool")
        if isinstance(target, (int, np.integer)):
            if not 0 <= target < self.num_classes:
                raise ValueError(
                    f"class index must lie in [0, {self.num_classes - 1}], got {target}"
                )
            return int(target)
        if isinstance(target, str):
            if target.strip().lstrip("-").isdigit():
                return self.class_index(int(target))
            lowered = [n.lower() for n in self.class_names]
            if target.lower() in lowered:
                return lowered.index(target.lower())
            close = difflib.get_close_matches(target.lower(), lowered, n=3, cutoff=0.6)
            names = ", ".join(repr(self.class_names[lowered.index(c)]) for c in close)
            raise ValueError(
                f"unknown class name {target!r}" + (f"; did you mean {names}?" if close else "")
            )
        raise TypeError(f"a class is an index or a name, got {type(target).__name__}")

    def resolve_targets(self, targets: Target, logits: torch.Tensor) -> torch.Tensor:
        """Class indices ``(B,)``: None (each image's predicted class), one index or name for
        every image, or one per image (a list or a tensor)."""
        batch = logits.shape[0]
        if targets is None:
            return logits.argmax(dim=1)
        if isinstance(targets, torch.Tensor):
            t = targets.to(device=logits.device, dtype=torch.long).reshape(-1)
            t = t.expand(batch) if t.numel() == 1 else t
            if t.numel() and ((t < 0).any() or (t >= self.num_classes).any()):
                raise ValueError(
                    f"target class indices must lie in [0, {self.num_classes - 1}], got {t.tolist()}"
                )
        elif isinstance(targets, (int, str, np.integer)):
            t = torch.full(
                (batch,), self.class_index(targets), dtype=torch.long, device=logits.device
            )
        else:
            t = torch.tensor(
                [self.class_index(v) for v in targets], dtype=torch.long, device=logits.device
            )
        if t.numel() != batch:
            raise ValueError(f"got {t.numel()} targets for {batch} images; give one per image")
        return t

    # -- the one call -----------------------------------------------------------------------------
    def explain(
        self, images, targets: Target = None, *, steps: bool = False, strict: bool = True
    ) -> Explanation:
        """Explain images: low-res, high-res and refined CAMs of each image's target class.

        Args:
            images: one image or a list of them: a path, a PIL image, an ``(H, W, 3)`` uint8
                array, a ``(3, H, W)`` / ``(B, 3, H, W)`` float tensor of RGB in [0, 1], or an
                :class:`ImageBatch` already prepared. Each is resized to ``input_size``.
            targets: None (each image's predicted class), a class index or name for every
                image, or one per image.
            steps: also return every step of the refinement (``explanation.steps``) and the
                masked image.
            strict: raise :class:`~hrcam.checks.NonFiniteError` when a CAM holds NaN or inf;
                with False that image's ``refined`` is NaN and ``errors`` says why.

        Returns:
            :class:`Explanation`.
        """
        batch = images if isinstance(images, ImageBatch) else self.prepare(images)
        return self.refine(self.cams(batch, targets), batch, steps=steps, strict=strict)

    # -- its three steps ----------------------------------------------------------------------------
    def decode(self, source: str | os.PathLike | Image.Image) -> Image.Image:
        """An image file (or PIL image) as upright 8-bit RGB, decoded as every front-end does
        (:func:`hrcam.load_image` with :attr:`decode_side`)."""
        return load_image(source, max_side=self.decode_side)

    def prepare(self, images) -> ImageBatch:
        """Images (see :meth:`explain`) → an :class:`ImageBatch` at ``input_size`` on the device.

        A network of volumes takes volumes (:func:`hrcam.scan_input.volume_pixels`: a scan or
        its path, an intensity array ``(D, H, W)``, a tensor in [0, 1]); a network of images
        takes scans too (an X-ray's DICOM, a 16-bit PNG: windowed, :attr:`window`)."""
        if self.spatial_dims == 3:
            return self._prepare_volumes(images)
        if isinstance(images, torch.Tensor):
            return self._prepare_tensor(images)
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise ValueError("no image given to explain")
        from .scan_input import is_scan_item, scan_pixels

        pictures = []
        for item in items:
            if isinstance(item, torch.Tensor):
                item = _tensor_picture(item)
            elif is_scan_item(item):
                item = _gray_picture(scan_pixels(item, self.window))
            elif not isinstance(item, (Image.Image, np.ndarray)):
                item = self.decode(item)
            pictures.append(resize_for_network(item, self.input_size))
        rgb = np.stack(pictures)
        pixels = torch.from_numpy(rgb).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return ImageBatch(self._normalize(self._channels(pixels)), self._channels(pixels), rgb)

    def _channels(self, pixels: torch.Tensor) -> torch.Tensor:
        """RGB pixels ``(B, 3, ...)`` as the network's channels: luminance (ITU-R 601, as
        Pillow's "L") for a network of one, repeated for more than three."""
        chans = self.backbone.in_chans
        if pixels.shape[1] == chans:
            return pixels
        if pixels.shape[1] == 3:
            weights = torch.tensor((0.299, 0.587, 0.114), device=pixels.device)
            pixels = torch.einsum("bc...,c->b...", pixels, weights)[:, None]
        return pixels[:, :1].expand(-1, chans, *pixels.shape[2:]).contiguous()

    def _prepare_tensor(self, images: torch.Tensor) -> ImageBatch:
        if images.ndim == 3:
            images = images[None]
        chans = self.backbone.in_chans
        if images.ndim != 4 or images.shape[1] not in {3, chans}:
            other = "" if chans == 3 else f", or {chans} channels (the network's) for 3"
            raise ShapeError(
                f"a tensor of images must be (B, 3, H, W) or (3, H, W) float RGB in [0, 1]"
                f"{other}, got {images.dtype} of shape {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise ShapeError(f"a tensor of images must be float in [0, 1], got {images.dtype}")
        pixels = images.to(self.device, torch.float32)
        if tuple(pixels.shape[-2:]) != self.input_size:
            pixels = F.interpolate(pixels, size=self.input_size, mode="bilinear", antialias=True)
        pixels = self._channels(pixels.clamp(0, 1))
        return ImageBatch(self._normalize(pixels), pixels)

    def _prepare_volumes(self, images) -> ImageBatch:
        from .scan_input import resize_volume, volume_pixels

        if isinstance(images, torch.Tensor) and images.ndim == 5:
            items = list(images)
        else:
            items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise ValueError("no volume given to explain")
        resized = []
        for item in items:
            volume = torch.from_numpy(volume_pixels(item, self.window))[None, None]
            resized.append(resize_volume(volume.to(self.device), self.input_size))
        pixels = self._channels(torch.cat(resized).clamp(0, 1))
        return ImageBatch(self._normalize(pixels), pixels)

    def _normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (pixels.ndim - 2)
        mean = torch.tensor(self.backbone.mean, device=pixels.device).view(shape)
        std = torch.tensor(self.backbone.std, device=pixels.device).view(shape)
        if pixels.ndim == 5:
            return (pixels - mean) / std
        # Channels-last, as the pictures are laid out: the CPU's convolutions run it ~1.5x
        # faster than the contiguous layout (benchmarks/bench_cams.py).
        return ((pixels - mean) / std).contiguous(memory_format=torch.channels_last)

    def cams(self, batch: ImageBatch, targets: Target = None) -> CAMs:
        """Parts 1 and 2: one pass of the localization network, its exact low-res CAM of each
        target, and the upsampler's high-res CAM (averaged with the mirrored image's if
        ``flip``)."""
        with torch.inference_mode():
            cams = self._batch_invariant_cams(batch.x, batch.pixels, targets)
            if not self.flip:
                return cams
            mirrored = self._batch_invariant_cams(
                batch.x.flip(-1), batch.pixels.flip(-1), cams.targets
            )
            return CAMs(
                low_res=(cams.low_res + mirrored.low_res.flip(-1)) / 2,
                high_res=(cams.high_res + mirrored.high_res.flip(-1)) / 2,
                probabilities=cams.probabilities,
                targets=cams.targets,
            )

    @property
    def cpu_chunk(self) -> int:
        """Images per call of the networks on a CPU: 4 at 224×224, fewer for larger inputs (the
        largest activation of a chunk stays under glibc's 32 MiB mmap threshold, so memory is
        reused rather than mapped and unmapped by the kernel at every call); one volume."""
        return max(1, min(4, (4 * 224 * 224) // int(np.prod(self.input_size))))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's logits ``(B, num_classes)`` of normalised images ``x`` (as
        :attr:`ImageBatch.x`), run as :meth:`cams` runs it: on a CPU in chunks of
        :attr:`cpu_chunk`, the same bits as the probabilities :meth:`cams` gives."""
        with torch.inference_mode():
            return torch.cat([self.backbone(x[rows])[:kept] for rows, kept in self.chunks(x)])

    def chunks(self, x: torch.Tensor):
        """``(rows, kept)`` per network call: on a CPU, index lists of exactly
        :attr:`cpu_chunk` rows (the last padded with copies of its last row) of which the first
        ``kept`` are real; elsewhere the whole batch at once. The CPU's convolutions pick their
        kernels by the batch's shape, which moves the last bits of a result, so with one shape
        for every call an image's results are the same bits whatever else is in its batch (and
        4 images a call run faster than 1 or 16 there, ``benchmarks/bench_cams.py``)."""
        n = x.shape[0]
        if x.device.type != "cpu":
            yield slice(None), n
            return
        chunk = self.cpu_chunk
        for start in range(0, n, chunk):
            rows = list(range(start, min(start + chunk, n)))
            yield rows + [rows[-1]] * (chunk - len(rows)), len(rows)

    def _batch_invariant_cams(self, x, pixels, targets: Target) -> CAMs:
        """:meth:`_cams` of the batch, in :meth:`chunks`."""
        if x.device.type != "cpu":
            return self._cams(x, pixels, targets)
        if targets is not None:  # names, or one per image: resolved for the whole batch first
            targets = self.resolve_targets(targets, torch.zeros(x.shape[0], self.num_classes))
        parts = [
            self._cams(x[rows], pixels[rows], None if targets is None else targets[rows]).select(
                list(range(kept))
            )
            for rows, kept in self.chunks(x)
        ]
        return CAMs(
            *(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(CAMs))
        )

    def _cams(self, x: torch.Tensor, pixels: torch.Tensor, targets: Target) -> CAMs:
        backbone = self.backbone
        skips = None
        if self.upsampler.needs_skips:
            features, skips = backbone.forward_features(x, return_skips=True)
        else:
            features = backbone.forward_features(x)
        logits = backbone.forward_head(features)
        chosen = self.resolve_targets(targets, logits)
        low = backbone.cam(features, chosen)
        high = self.upsampler.upsample(
            UpsampleInputs(backbone, features, skips, chosen, low, pixels)
        )
        return CAMs(low, high, logits.softmax(dim=1), chosen)

    def refine(
        self, cams: CAMs, batch: ImageBatch, *, steps: bool = False, strict: bool = True
    ) -> Explanation:
        """Part 3: the refinement of each image's CAMs with ``refine_options``, as an
        :class:`Explanation` (see :meth:`explain` for ``steps`` and ``strict``)."""
        low = cams.low_res.float()
        high = cams.high_res.float()
        errors = tuple(_non_finite_error(low[i], high[i]) for i in range(len(batch)))
        if strict and any(errors):
            raise NonFiniteError("; ".join(f"image {i}: {e}" for i, e in enumerate(errors) if e))
        all_steps = self._refine(low, high, batch, errors, with_image=steps)
        rows = [
            torch.full(high.shape[1:], float("nan"))
            if s is None
            else torch.from_numpy(np.asarray(s.refined, dtype=np.float32))
            for s in all_steps
        ]
        return Explanation(
            low_res=cams.low_res,
            high_res=cams.high_res,
            refined=torch.stack(rows).to(high.device),
            probabilities=cams.probabilities,
            targets=cams.targets,
            images=batch.rgb,
            class_names=self.class_names,
            steps=tuple(all_steps) if steps else None,
            errors=errors,
        )

    def _refine(self, low, high, batch: ImageBatch, errors, *, with_image: bool) -> list:
        """Per image :class:`RefineSteps` (None where ``errors`` says it cannot be refined):
        the batched torch pipeline on a GPU, the compiled one-image one on a CPU (the faster of
        each, ``benchmarks/bench_refine.py``); volumes by :mod:`hrcam.postprocess.volume`."""
        options = self.refine_options
        if high.device.type == "cuda" and not any(errors) and self.spatial_dims == 2:
            images = None
            if with_image:
                images = torch.from_numpy(batch.rgb).to(high.device)
            result = refine_batch(low, high, images, options=options)
            return [result.select(i) for i in range(len(batch))]
        low_np, high_np = low.cpu().numpy(), high.cpu().numpy()
        refine_one = one_image.refine
        if self.spatial_dims == 3:
            from .postprocess.volume import refine_volume as refine_one
        return [
            None
            if errors[i]
            else refine_one(
                low_np[i], high_np[i], batch.rgb[i] if with_image else None, options=options
            )
            for i in range(len(batch))
        ]

    @torch.inference_mode()
    def reconstruct(self, batch: ImageBatch) -> torch.Tensor:
        """The paper's expansion network's reconstruction of the images, ``(B, 3, H, W)`` in
        the input's normalisation (what stage 2 trains it on)."""
        if self.expansion is None:
            raise ValueError(
                "this model has no expansion network; train one with `hrcam train-expansion`"
            )
        features, skips = self.backbone.forward_features(batch.x, return_skips=True)
        return self.expansion.reconstruct(
            self.expansion.decode(features, skips, batch.x.shape[-2:])
        )


def maps_record(
    low_res, high_res, steps: RefineSteps, probabilities, target: int, dtype: str = "float16"
) -> dict[str, np.ndarray]:
    """The arrays of one explained image as ``maps.npz`` holds them: the three CAMs
    (``high_res_cam`` and ``refined_cam`` in ``dtype``), the ROI, the seeds, the segment, the
    growing bounds, the target, the probabilities and the options. Every other step is
    ``hrcam.refine(low_res_cam, high_res_cam)``."""
    return {
        "low_res_cam": to_numpy(low_res).astype(np.float32),  # tiny: always full precision
        "high_res_cam": to_numpy(high_res).astype(dtype),
        "refined_cam": np.asarray(steps.refined).astype(dtype),
        "roi": np.asarray(steps.roi, dtype=bool),
        "focal_points": np.asarray(steps.focal_points, dtype=bool),
        "segment": np.asarray(steps.full_segment, dtype=bool),
        "bounds": np.asarray(steps.bounds, dtype=np.float32),
        "target": np.int64(target),
        "probabilities": to_numpy(probabilities).astype(np.float32),
        "options": np.array(json.dumps(dataclasses.asdict(steps.options))),
    }


def _gray_picture(pixels: np.ndarray) -> np.ndarray:
    """A windowed 2-D scan (float in [0, 1]) as an ``(H, W)`` uint8 picture."""
    if pixels.ndim != 2:
        raise ShapeError(
            f"a scan of {pixels.ndim} dimensions given to a network of 2-D images; a volume "
            "needs a network of volumes (hrcam.from_model of a 3-D network)"
        )
    return (np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8)


def _tensor_picture(t: torch.Tensor) -> np.ndarray:
    """One ``(3, H, W)`` float tensor of RGB in [0, 1] as an ``(H, W, 3)`` uint8 picture."""
    if t.ndim != 3 or t.shape[0] != 3 or not t.is_floating_point():
        raise ShapeError(
            f"an image tensor must be (3, H, W) float RGB in [0, 1], got {t.dtype} of shape {tuple(t.shape)}"
        )
    return (
        (t.detach().float().clamp(0, 1) * 255)
        .round()
        .to(torch.uint8)
        .permute(1, 2, 0)
        .cpu()
        .numpy()
    )


def _non_finite_error(low: torch.Tensor, high: torch.Tensor) -> str | None:
    bad = count_non_finite(low) + count_non_finite(high)
    if not bad:
        return None
    return (
        f"the model's CAMs hold {bad} non-finite value(s) (NaN or ±inf); check the model's "
        "weights and the input"
    )


def from_model(
    module: nn.Module,
    *,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | None = None,
    upsampler: Upsampler | str = "guided",
    refine_options: RefineOptions | None = None,
) -> Explainer:
    """An :class:`Explainer` of a classifier object you already have (torchvision or timm).

    The module is wrapped, not copied (:mod:`hrcam.backbones.wrapped` lists the families and
    says why the others have no exact CAM): its logits through hrcam equal ``module(x)``, and
    its low-res, guided high-res and refined CAMs need no training.

    Args:
        module: e.g. ``torchvision.models.resnet50(weights=...)`` or ``timm.create_model(...)``;
            put in eval mode.
        class_names: one name per class (default: ImageNet's for 1000 classes).
        mean, std: the input normalisation (default: timm's ``pretrained_cfg``, else ImageNet's).
        input_size: the side images are resized to (default: timm's, else 224).
        upsampler, refine_options: as :class:`Explainer`.

    Example::

        >>> import torchvision
        >>> explainer = from_model(torchvision.models.resnet18(weights=None))
        >>> explainer.explain(torch.rand(1, 3, 224, 224)).refined.shape
        torch.Size([1, 224, 224])
    """
    from .backbones.wrapped import wrap_classifier

    backbone = wrap_classifier(
        module, class_names=class_names, mean=mean, std=std, input_size=input_size
    )
    return Explainer(backbone, upsampler, refine_options=refine_options or RefineOptions()).eval()
