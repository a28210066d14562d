"""The two training stages of the paper, from Python or from ``hrcam train-*``.

- stage 1, :func:`train_classifier` (:class:`ClassifierConfig`): the localization network;
- stage 2, :func:`train_expansion` (:class:`ExpansionConfig`): the expansion network, the
  localization network frozen.

Both run the shared loop of :mod:`.loop` (checkpoints, exact ``resume``, progress, DDP under
``torchrun`` through :func:`.distributed.distributed`). The names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

__all__ = [
    "ClassifierConfig",
    "ExpansionConfig",
    "TrainConfig",
    "evaluate_folder",
    "train_classifier",
    "train_expansion",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "ClassifierConfig": ".config",
        "ExpansionConfig": ".config",
        "TrainConfig": ".config",
        "evaluate_folder": ".stage1_classifier",
        "train_classifier": ".stage1_classifier",
        "train_expansion": ".stage2_expansion",
    },
)

if TYPE_CHECKING:
    from .config import ClassifierConfig, ExpansionConfig, TrainConfig
    from .stage1_classifier import evaluate_folder, train_classifier
    from .stage2_expansion import train_expansion
