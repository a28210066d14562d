"""``HRCAM``: the localization network joined with its expansion network.

Everything a user asks of an explained classifier goes through here: predictions, top-k,
low-resolution CAMs (at the feature resolution), high-resolution CAMs (at the input resolution)
and, in one forward pass, all of them together (:meth:`HRCAM.generate_cams`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from .arrays import resize_maps, unnormalize
from .backbones.base import Backbone
from .expansion import ExpansionNetwork
from .guided_upsampling import guided_upsample
from .io import image_to_tensor, load_image, tensor_to_image

__all__ = ["HIGH_RES_MODES", "HRCAM", "CAMs", "Target", "from_model", "upsample_cam"]

Target = int | str | Sequence[int | str] | torch.Tensor | None


@dataclass(frozen=True)
class CAMs:
    """What :meth:`HRCAM.generate_cams` returns; read it by name (it does not unpack).

    ``low_res`` (B, h, w) at the feature resolution, ``high_res`` (B, H, W) at the input's,
    ``probabilities`` (B, C) the softmax of the logits, ``targets`` (B,) the classes explained.
    """

    low_res: torch.Tensor
    high_res: torch.Tensor
    probabilities: torch.Tensor
    targets: torch.Tensor

    def select(self, index: torch.Tensor | slice | Sequence[int]) -> CAMs:
        """The same fields for some of the images (rows ``index``)."""
        if not isinstance(index, (slice, torch.Tensor)):
            index = torch.as_tensor(list(index), dtype=torch.long, device=self.low_res.device)
        return CAMs(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


def upsample_cam(cam: torch.Tensor, size: Sequence[int], *, mode: str = "bilinear") -> torch.Tensor:
    """Resize CAMs (B, h, w) or (h, w) to ``size`` = (H, W), bilinear with half-pixel centres."""
    return resize_maps(cam, size, mode=mode)


HIGH_RES_MODES = ("auto", "guided", "paper")
CAM_WEIGHTS = ("all", "positive")


class HRCAM(nn.Module):
    """High-resolution CAM model: a localization network and, optionally, its expansion network.

    Args:
        backbone: the localization network (classification is entirely its own).
        expansion: the paper's trained expansion network, or None (every map but the paper's
            high-res CAM still works).
        high_res: how :meth:`generate_cams` makes the high-resolution CAM:
            ``"guided"`` — the low-res CAM upsampled by :func:`hrcam.guided_upsample`, guided by
            the image (training-free, any model; hrcam's default); ``"paper"`` —
            ``Σ_k w_ck A_high_k`` over the expansion network's full-resolution maps, as the
            paper (needs ``expansion``); ``"auto"`` (default) — ``"guided"``.
        guided_options: keyword options of :func:`hrcam.guided_upsample` (``colour_sigma``,
            ``spatial_sigma``, ``coarse_to_fine``); its measured defaults when None.
        cam_weights: the FC weights the guided high-res CAM is made from: ``"positive"``
            (default: only the evidence for the class, ``Σ_k max(w_ck, 0) A_k``; see
            :meth:`hrcam.Backbone.cam`) or ``"all"`` (the CAM itself). Chosen on the first
            half of pets-dev: PxAP / best pixel IoU 76.9 / 72.7 against 75.5 / 70.4 (README).
            The low-res CAM is always the exact one, and the paper's high-res CAM uses all.

    Example::

        >>> import hrcam
        >>> from PIL import Image
        >>> from skimage import data
        >>> model = hrcam.load_model("default")                   # EfficientNet-Lite0, offline
        >>> x = model.preprocess(Image.fromarray(data.chelsea()))  # (1, 3, 224, 224)
        >>> cams = model.generate_cams(x)
        >>> tuple(cams.low_res.shape), tuple(cams.high_res.shape)
        ((1, 7, 7), (1, 224, 224))
        >>> model.class_names[int(cams.targets[0])]
        'Egyptian cat'
    """

    def __init__(
        self,
        backbone: Backbone,
        expansion: ExpansionNetwork | None = None,
        *,
        high_res: str = "auto",
        guided_options: dict | None = None,
        cam_weights: str = "positive",
    ) -> None:
        super().__init__()
        if expansion is not None:
            expansion.check_backbone(backbone)
        if cam_weights not in CAM_WEIGHTS:
            raise ValueError(f"cam_weights must be one of {CAM_WEIGHTS}, got {cam_weights!r}")
        self.backbone = backbone
        self.expansion = expansion
        self.guided_options = dict(guided_options or {})
        self.cam_weights = cam_weights
        self.high_res_mode = high_res

    @property
    def high_res_mode(self) -> str:
        """``"guided"`` or ``"paper"``: how :meth:`high_res_cam` is computed (see the class docs)."""
        return self._high_res_mode

    @high_res_mode.setter
    def high_res_mode(self, mode: str) -> None:
        if mode not in HIGH_RES_MODES:
            raise ValueError(f"high_res must be one of {', '.join(HIGH_RES_MODES)}; got {mode!r}")
        if mode == "paper" and self.expansion is None:
            raise ValueError(
                "high_res='paper' needs an expansion network, and this model has none: train "
                "one with `hrcam train-expansion` (the guided high-res CAM needs none)"
            )
        self._high_res_mode = "guided" if mode == "auto" else mode

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return self.backbone.class_names

    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- inputs -----------------------------------------------------------------------------------
    def preprocess(
        self,
        image: str | os.PathLike | Image.Image,
        *,
        size: int | tuple[int, int] | None | str = "default",
    ) -> torch.Tensor:
        """Load a path or PIL image and return the normalised (1, 3, H, W) tensor for this model.

        ``size`` defaults to the backbone's ``input_size`` (224 for the ImageNet models); None
        keeps the image's own size.
        """
        size = self.backbone.input_size if size == "default" else size
        return image_to_tensor(
            load_image(image), size=size, mean=self.backbone.mean, std=self.backbone.std
        ).to(self.device)

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs back to RGB in [0, 1]: (B, 3, H, W) → (B, 3, H, W)."""
        return unnormalize(x, self.backbone.mean, self.backbone.std)

    def to_image(self, x: torch.Tensor):
        """Undo the normalisation of one input: (1, 3, H, W) → (H, W, 3) uint8 array."""
        return tensor_to_image(x, mean=self.backbone.mean, std=self.backbone.std)

    def resolve_targets(self, target: Target, logits: torch.Tensor) -> torch.Tensor:
        """Class indices (B,) from ``target``: None (predicted), an index, a name, or one per image."""
        batch = logits.shape[0]
        if target is None:
            return logits.argmax(dim=1)
        if isinstance(target, torch.Tensor):
            t = target.to(device=logits.device, dtype=torch.long).reshape(-1)
            if t.numel() == 1:
                t = t.expand(batch)
        elif isinstance(target, (int, str)):
            t = torch.full(
                (batch,), self._class_index(target), dtype=torch.long, device=logits.device
            )
        else:
            items = list(target)
            if len(items) != batch:
                raise ValueError(
                    f"got {len(items)} targets for a batch of {batch} images; give one per image"
                )
            t = torch.tensor(
                [self._class_index(v) for v in items], dtype=torch.long, device=logits.device
            )
        if t.numel() != batch:
            raise ValueError(
                f"got {t.numel()} targets for a batch of {batch} images; give one per image"
            )
        if (t < 0).any() or (t >= self.num_classes).any():
            raise ValueError(
                f"target class indices must lie in [0, {self.num_classes - 1}], got {t.tolist()}"
            )
        return t

    def _class_index(self, target: int | str) -> int:
        if isinstance(target, bool):
            raise TypeError("target must be a class index or name, not a bool")
        if isinstance(target, int):
            if not 0 <= target < self.num_classes:
                raise ValueError(
                    f"target class index must lie in [0, {self.num_classes - 1}], got {target}"
                )
            return target
        if isinstance(target, str):
            if target.strip().lstrip("-").isdigit():
                return self._class_index(int(target))
            lowered = [n.lower() for n in self.class_names]
            if target.lower() in lowered:
                return lowered.index(target.lower())
            close = difflib.get_close_matches(target.lower(), lowered, n=3, cutoff=0.6)
            hint = (
                f"; did you mean {', '.join(repr(self.class_names[lowered.index(c)]) for c in close)}?"
                if close
                else ""
            )
            raise ValueError(f"unknown class name {target!r}{hint}")
        raise TypeError(f"target must be a class index or name, got {type(target).__name__}")

    # -- predictions -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) — the localization network's, untouched by the expansion network."""
        return self.backbone(x)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, C)."""
        return self.backbone(x).softmax(dim=1)

    @torch.inference_mode()
    def topk(self, x: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` most probable classes: (probabilities (B, k), indices (B, k))."""
        return self.predict(x).topk(min(k, self.num_classes), dim=1)

    # -- CAMs ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def low_res_cam(
        self, x: torch.Tensor, target: Target = None, *, weights: str = "all"
    ) -> torch.Tensor:
        """Low-resolution CAMs (B, h, w) at the feature resolution; see :func:`upsample_cam`.

        ``weights="positive"``: only the FC weights above zero (see :meth:`Backbone.cam`).
        """
        features = self.backbone.forward_features(x)
        logits = self.backbone.forward_head(features)
        return self.backbone.cam(features, self.resolve_targets(target, logits), weights=weights)

    @torch.inference_mode()
    def high_res_cam(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """High-resolution CAMs (B, H, W) at the input resolution."""
        return self.generate_cams(x, target).high_res

    @torch.inference_mode()
    def generate_cams(self, x: torch.Tensor, target: Target = None, *, flip: bool = False) -> CAMs:
        """Prediction, low-res and high-res CAMs from one pass of each network.

        ``flip=True`` averages the CAMs with those of the mirrored image (mirrored back), for the
        same target classes: test-time augmentation at twice the cost. The probabilities are
        always the unflipped image's, so predictions never change.

        Returns:
            :class:`CAMs` with ``low_res`` (B, h, w), ``high_res`` (B, H, W),
            ``probabilities`` (B, C) and ``targets`` (B,).
        """
        cams = self._generate_cams(x, target)
        if not flip:
            return cams
        mirrored = self._generate_cams(torch.flip(x, dims=[3]), cams.targets)
        return CAMs(
            low_res=(cams.low_res + torch.flip(mirrored.low_res, dims=[2])) / 2,
            high_res=(cams.high_res + torch.flip(mirrored.high_res, dims=[2])) / 2,
            probabilities=cams.probabilities,
            targets=cams.targets,
        )

    def _generate_cams(self, x: torch.Tensor, target: Target) -> CAMs:
        paper = self._high_res_mode == "paper"
        if paper:
            features, skips = self.backbone.forward_features(x, return_skips=True)
        else:
            features = self.backbone.forward_features(x)
        logits = self.backbone.forward_head(features)
        targets = self.resolve_targets(target, logits)
        low = self.backbone.cam(features, targets)
        if paper:
            decoded = self.expansion.decode(features, skips, x.shape[-2:])
            high = self.expansion.class_maps(decoded, self.backbone.fc.weight[targets])
        else:
            source = low
            if self.cam_weights != "all":
                source = self.backbone.cam(features, targets, weights=self.cam_weights)
            high = guided_upsample(source, self.unnormalize(x), **self.guided_options)
        return CAMs(
            low_res=low, high_res=high, probabilities=logits.softmax(dim=1), targets=targets
        )

    @torch.inference_mode()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The expansion network's reconstruction of ``x`` (B, 3, H, W), in the input's normalisation."""
        if self.expansion is None:
            raise RuntimeError(
                "this model has no expansion network; train one with `hrcam train-expansion`"
            )
        features, skips = self.backbone.forward_features(x, return_skips=True)
        return self.expansion.reconstruct(self.expansion.decode(features, skips, x.shape[-2:]))


def from_model(
    module: nn.Module,
    *,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | None = None,
    guided_options: dict | None = None,
) -> HRCAM:
    """An :class:`HRCAM` of a classifier object you already have (torchvision or timm).

    The module is wrapped, not copied (:mod:`hrcam.backbones.wrapped` lists the families and
    says why the others have no exact CAM): its logits through hrcam equal ``module(x)``, and
    its low-res CAM, guided high-res CAM and refined CAM work with no training.

    Args:
        module: e.g. ``torchvision.models.resnet50(weights=...)`` or ``timm.create_model(...)``;
            put in eval mode.
        class_names: one name per class (default: ImageNet's for 1000 classes).
        mean, std: the input normalisation of :meth:`HRCAM.preprocess` (default: timm's
            ``pretrained_cfg``, else ImageNet's).
        input_size: the side images are resized to (default: timm's, else 224).
        guided_options: options of :func:`hrcam.guided_upsample`.

    Example::

        >>> import torchvision
        >>> model = from_model(torchvision.models.resnet18(weights=None))
        >>> model.generate_cams(torch.rand(1, 3, 224, 224)).high_res.shape
        torch.Size([1, 224, 224])
    """
    from .backbones.wrapped import wrap_classifier

    backbone = wrap_classifier(
        module, class_names=class_names, mean=mean, std=std, input_size=input_size
    )
    return HRCAM(backbone, guided_options=guided_options).eval()
