"""Saving and loading models and training checkpoints.

Two formats:

- **Training checkpoints** (``.pt``, written by the trainers): one ``torch.save`` dict with
  the backbone's config and weights, the expansion network's config and weights (stage 2),
  the optimiser and scheduler states, the epoch, the command's config and its metrics. They are
  read with ``weights_only=True``, so loading one never runs code from the file.
- **Exported models** (``NAME.safetensors`` + ``NAME.json``): weights in safetensors and a JSON
  sidecar with the configs, class names and training metrics. The embedded default ships this
  way, holding only the expansion network and naming its localization network's weights
  (``"weights": "imagenet"``), checked against a fingerprint of the FC layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .backbones import Backbone, create_backbone, list_backbones
from .backbones.weights import quiet_torch_load
from .builders import explainer_from_builder, is_builder_spec
from .explainer import Explainer
from .upsample.expansion import ExpansionNetwork
from .utils import atomic_save_json, atomic_torch_save, atomic_write

__all__ = [
    "CheckpointError",
    "backbone_fingerprint",
    "build_backbone",
    "export_model",
    "load_backbone",
    "load_checkpoint",
    "load_model",
    "model_from_checkpoint",
    "save_checkpoint",
]

FORMAT = "hrcam-checkpoint"
FORMAT_VERSION = 1
_PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_MODEL = "efficientnet_lite0"


class CheckpointError(ValueError):
    """A checkpoint or exported model is unreadable, incomplete, or does not fit."""


def backbone_fingerprint(backbone: Backbone) -> str:
    """A short hash of the FC weights: tells whether an expansion network was trained on this backbone."""
    data = backbone.fc.weight.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _backbone_spec(backbone: Backbone) -> dict[str, Any]:
    return {"config": dict(backbone.config), "class_names": list(backbone.class_names)}


def build_backbone(spec: dict[str, Any], *, weights: str | None = None) -> Backbone:
    """Rebuild a backbone from the ``{"config", "class_names"}`` spec a checkpoint stores."""
    config = dict(spec["config"])
    name = config.pop("name")
    if name.startswith("wrapped:"):
        if "builder" not in config:
            raise CheckpointError(
                f"this model wraps {name[len('wrapped:') :]}, which hrcam cannot rebuild by "
                "itself: wrap it through a builder (--model FILE.py:FUNCTION, "
                "hrcam.builders) before exporting it"
            )
        from .builders import backbone_from_builder

        return backbone_from_builder(config, class_names=spec.get("class_names"))
    try:
        return create_backbone(name, weights=weights, class_names=spec.get("class_names"), **config)
    except KeyError as err:
        raise CheckpointError(
            f"checkpoint names a backbone this hrcam does not know: {err}"
        ) from None


def save_checkpoint(
    path: str | os.PathLike,
    *,
    backbone: Backbone,
    expansion: ExpansionNetwork | None = None,
    stage: str,
    epoch: int,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a training checkpoint atomically (a crash keeps the previous file intact)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "epoch": int(epoch),
        "config": _jsonable(config or {}),
        "metrics": _jsonable(metrics or {}),
        "backbone": _backbone_spec(backbone),
        "backbone_state": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        "backbone_fingerprint": backbone_fingerprint(backbone),
    }
    if expansion is not None:
        payload["expansion"] = {"config": expansion.config}
        payload["expansion_state"] = {
            k: v.detach().cpu() for k, v in expansion.state_dict().items()
        }
    if optimizer is not None:
        payload["optimizer_state"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler_state"] = scheduler.state_dict()
    if extra:
        payload.update(extra)
    atomic_torch_save(payload, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a training checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = quiet_torch_load(path)
    except Exception:  # noqa: BLE001 - truncated zip, bad pickle, random bytes
        # torch's own message advises weights_only=False, which would run code from the file:
        # never the advice for a file that may not be what it claims.
        raise CheckpointError(
            f"{path}: not a readable hrcam checkpoint: the file is truncated or corrupt, or was "
            "not written by hrcam (hrcam reads only the tensors and plain values of a checkpoint)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an hrcam checkpoint (no '{FORMAT}' marker); hrcam reads checkpoints written by "
            "`hrcam train-classifier` / `hrcam train-expansion`, or exported .safetensors models"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer hrcam (format {payload['format_version']})"
        )
    for key in ("backbone", "backbone_state"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    return payload


def _load_state(
    module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, source: str
) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        raise CheckpointError(
            f"{source}: the {what} weights do not fit the {what} they describe: "
            + " ".join(line.strip() for line in first[:4])
        ) from None


def _expansion_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` without the guidance head of hrcam 0.1 (now :func:`hrcam.guided_upsample`)."""
    legacy = {k: v for k, v in state.items() if k.startswith("guidance_head.")}
    if any(bool(v.any()) for v in legacy.values()):
        warnings.warn(
            f"{source}: its expansion network has a trained guidance head (hrcam 0.1), which "
            "hrcam no longer uses; the decoder is loaded, and the guided high-res CAM is "
            "hrcam.guided_upsample's",
            stacklevel=3,
        )
    return {k: v for k, v in state.items() if k not in legacy}


def model_from_checkpoint(payload: dict[str, Any], *, source: str = "checkpoint") -> Explainer:
    """Build the :class:`~hrcam.Explainer` a checkpoint describes (its backbone, and its
    expansion network if stage 2)."""
    backbone = build_backbone(payload["backbone"], weights=None)
    _load_state(backbone, payload["backbone_state"], "localization network", source)
    expansion = None
    if "expansion" in payload:
        expansion = ExpansionNetwork.from_config(payload["expansion"]["config"])
        state = _expansion_state(payload["expansion_state"], source)
        _load_state(expansion, state, "expansion network", source)
    try:
        model = Explainer(backbone, expansion=expansion)
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None
    return model.eval()


def export_model(
    model: Explainer,
    path: str | os.PathLike,
    *,
    include_backbone: bool = True,
    backbone_weights: str | None = None,
    metadata: dict[str, Any] | None = None,
    high_res: str | None = None,
) -> Path:
    """Write ``model``'s networks as ``path`` (.safetensors) plus a ``.json`` sidecar, atomically.

    With ``include_backbone=False`` only the expansion network is stored and the sidecar names
    ``backbone_weights`` (e.g. ``"imagenet"``) to rebuild the localization network from.
    ``high_res`` names the upsampler the model is loaded with (``upsampler="auto"`` of
    :func:`load_model`; :data:`hrcam.upsample.UPSAMPLERS`); None lets ``"auto"`` choose from
    its networks.
    """
    from .upsample import UPSAMPLERS

    if high_res is not None and high_res not in UPSAMPLERS:
        raise ValueError(f"high_res must be one of {', '.join(UPSAMPLERS)}; got {high_res!r}")
    from safetensors.torch import save

    path = Path(path).with_suffix(".safetensors")
    backbone, trunk = model.backbone, None
    config = backbone.config
    if str(config.get("name", "")).startswith("wrapped:") and "builder" not in config:
        # The user's class cannot be rebuilt from a name: its trunk is traced instead.
        backbone, trunk = _traced(backbone)
    tensors = {}
    if include_backbone:
        tensors.update({f"backbone.{k}": v for k, v in backbone.state_dict().items()})
    elif backbone_weights is None:
        raise ValueError(
            "include_backbone=False needs backbone_weights (e.g. 'imagenet') to rebuild the backbone"
        )
    if model.expansion is not None:
        tensors.update({f"expansion.{k}": v for k, v in model.expansion.state_dict().items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    sidecar = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backbone": _backbone_spec(backbone),
        "backbone_weights": None if include_backbone else backbone_weights,
        "backbone_fingerprint": backbone_fingerprint(backbone),
        "expansion": None if model.expansion is None else {"config": model.expansion.config},
        "high_res": high_res,
        "metadata": _jsonable(metadata or {}),
    }
    if trunk is not None:
        with atomic_write(_trunk_path(path), "wb") as f:
            f.write(trunk)
    with atomic_write(path, "wb") as f:
        f.write(save(tensors))
    atomic_save_json(sidecar, path.with_suffix(".json"))
    return path


def _trunk_path(path: Path) -> Path:
    """Where an exported trunk lies beside its model (``NAME.trunk.pt2``)."""
    return path.with_suffix(".trunk.pt2")


def _traced(backbone: Backbone) -> tuple[Backbone, bytes]:
    """A wrapped backbone as a :class:`~hrcam.backbones.traced.TracedBackbone` (its trunk
    exported, its classifier copied) and the trunk's ``torch.export`` bytes."""
    from .backbones.traced import TracedBackbone, trace_trunk

    try:
        trunk = trace_trunk(backbone)
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"cannot export {backbone.config['name']}: {err}; export it through a builder "
            "instead (hrcam.builders)"
        ) from None
    config = {
        "name": "traced",
        "wraps": backbone.config["name"][len("wrapped:") :],
        "num_features": backbone.num_features,
        "feature_stride": backbone.feature_stride,
        "num_classes": backbone.num_classes,
        "input_size": backbone.input_size,
        "mean": list(backbone.mean),
        "std": list(backbone.std),
        "in_chans": backbone.in_chans,
        "spatial_dims": backbone.spatial_dims,
    }
    traced = TracedBackbone(
        trunk,
        class_names=backbone.class_names,
        config=config,
        **{k: v for k, v in config.items() if k not in ("name", "wraps")},
    )
    traced.fc.load_state_dict(backbone.fc.state_dict())
    return traced, trunk


def _load_exported(path: Path) -> Explainer:
    from safetensors.torch import load_file

    sidecar_path = path.with_suffix(".json")
    if not sidecar_path.is_file():
        raise CheckpointError(f"{path}: its description {sidecar_path.name} is missing beside it")
    try:
        sidecar = json.loads(sidecar_path.read_text())
        tensors = load_file(str(path))
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: unreadable exported model ({type(err).__name__}: {err})"
        ) from None
    if sidecar.get("format") != FORMAT:
        raise CheckpointError(f"{sidecar_path}: not an hrcam model description")
    backbone_state = {
        k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")
    }
    if sidecar["backbone"]["config"].get("name") == "traced":
        backbone = _load_traced(path, sidecar["backbone"])
    else:
        backbone = build_backbone(
            sidecar["backbone"], weights=None if backbone_state else sidecar["backbone_weights"]
        )
    if backbone_state:
        _load_state(backbone, backbone_state, "localization network", str(path))
    if (
        sidecar.get("backbone_fingerprint")
        and backbone_fingerprint(backbone) != sidecar["backbone_fingerprint"]
    ):
        raise CheckpointError(
            f"{path}: this expansion network was trained on a different localization network "
            f"(fingerprint {sidecar['backbone_fingerprint']}, found {backbone_fingerprint(backbone)})"
        )
    expansion = None
    if sidecar.get("expansion"):
        expansion = ExpansionNetwork.from_config(sidecar["expansion"]["config"])
        state = {
            k[len("expansion.") :]: v for k, v in tensors.items() if k.startswith("expansion.")
        }
        _load_state(expansion, _expansion_state(state, str(path)), "expansion network", str(path))
    model = Explainer(backbone, expansion=expansion)
    if sidecar.get("high_res"):  # the upsampler the model was exported to be loaded with
        try:
            model = model.replace(upsampler=sidecar["high_res"])
        except ValueError as err:
            raise CheckpointError(f"{sidecar_path}: {err}") from None
    return model.eval()


def _load_traced(path: Path, spec: dict[str, Any]) -> Backbone:
    from .backbones.traced import TracedBackbone

    trunk = _trunk_path(path)
    if not trunk.is_file():
        raise CheckpointError(f"{path}: its exported network {trunk.name} is missing beside it")
    config = dict(spec["config"])
    kwargs = {k: v for k, v in config.items() if k not in ("name", "wraps")}
    try:
        return TracedBackbone(
            trunk.read_bytes(), class_names=spec.get("class_names"), config=config, **kwargs
        )
    except RuntimeError as err:
        raise CheckpointError(f"{trunk}: unreadable exported network ({err})") from None


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    upsampler: str = "auto",
) -> Explainer:
    """Load a model by name or from a file, as an :class:`~hrcam.Explainer`.

    - ``"default"`` or ``"efficientnet_lite0"``: EfficientNet-Lite0 with ImageNet weights and the
      expansion network shipped inside hrcam (works offline);
    - another registered backbone name (``"efficientnet_lite1"``, ``"densenet121"``,
      ``"timm/<name>"``, …): its ImageNet weights, and the shipped expansion network if hrcam
      has one for it; every map but the paper's high-res CAM works without one;
    - a ``.pt`` checkpoint from ``hrcam train-classifier`` / ``hrcam train-expansion``;
    - an exported ``.safetensors`` model (with its ``.json`` beside it);
    - ``FILE.py:FUNCTION`` or ``MODULE:FUNCTION``: a function that builds your own network
      (:mod:`hrcam.builders`).

    ``upsampler`` picks how high-resolution CAMs are made (:func:`hrcam.upsample.create_upsampler`):
    ``"auto"`` (default: the one an exported model names, else ``"boundary"`` for a model whose
    expansion network has a trained boundary head and ``"guided"`` for the others; the default
    model names ``"guided"``, its boundary head one argument away), ``"guided"`` (no
    training), ``"boundary"``, ``"paper"`` (the paper's decoder) or ``"hed"``. Other settings
    come with :meth:`Explainer.replace`. A model of your own that is already in memory is
    wrapped by :func:`hrcam.from_model` instead.
    """
    name = str(name_or_path)
    if name == "default":
        name = DEFAULT_MODEL
    path = Path(name)
    if is_builder_spec(name) and not path.exists():
        model = explainer_from_builder(name)
    elif path.suffix in (".pt", ".pth", ".safetensors") or path.exists():
        if path.suffix == ".safetensors":
            if not path.is_file():
                raise FileNotFoundError(f"{path}: model file not found")
            model = _load_exported(path)
        else:
            model = model_from_checkpoint(load_checkpoint(path), source=str(path))
    else:
        shipped = _PACKAGE_WEIGHTS / f"{name}.safetensors"
        if shipped.is_file():
            model = _load_exported(shipped)
        else:
            try:
                backbone = create_backbone(name, weights="imagenet")
            except KeyError:
                raise KeyError(
                    f"{name!r} is neither a model file nor a known model; known: "
                    f"{', '.join(list_backbones())} (or 'default')"
                ) from None
            model = Explainer(backbone).eval()
    if upsampler != "auto":
        try:
            model = model.replace(upsampler=upsampler)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    return model.to(device) if device is not None else model


def load_backbone(name_or_path: str | os.PathLike) -> Backbone:
    """The localization network of anything :func:`load_model` reads (a file or a name)."""
    return load_model(name_or_path).backbone


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only, so ``weights_only`` loading and the JSON sidecars accept it."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, float):  # NumPy's float64 is a float too: store a plain one
        return float(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
