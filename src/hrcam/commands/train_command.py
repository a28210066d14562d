"""``hrcam train-classifier`` (stage 1), ``hrcam train-expansion`` (stage 2), ``evaluate-classifier``.

Thin: the training flags are made from the fields of :class:`hrcam.train.ClassifierConfig` and
:class:`hrcam.train.ExpansionConfig`, and the parsed flags become that config again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

_STAGE1 = """Stage 1: train or fine-tune the localization network on DATA/train/<class>/…, tested on
DATA/test/<class>/… after every epoch (the folder names become the class names). Several processes:
torchrun --nproc_per_node=N -m hrcam train-classifier …"""
_STAGE2 = """Stage 2: train the expansion network on any folder of images (labels are not read) with
the classifier frozen; the paper's reconstruction loss. Several processes: torchrun … -m hrcam
train-expansion …"""


def register(subparsers) -> None:
    from ..train.config import ClassifierConfig, ExpansionConfig, add_config_arguments
    from ..utils import int_in

    p = subparsers.add_parser(
        "train-classifier",
        help="stage 1: train or fine-tune the localization network on DATA/train, test on DATA/test",
        description=_STAGE1,
    )
    add_config_arguments(p, ClassifierConfig)
    p.set_defaults(func=lambda args: _run("classifier", args))

    p = subparsers.add_parser(
        "train-expansion",
        help="stage 2: train the expansion network (reconstruction) with the classifier frozen",
        description=_STAGE2,
    )
    add_config_arguments(p, ExpansionConfig)
    p.set_defaults(func=lambda args: _run("expansion", args))

    p = subparsers.add_parser(
        "evaluate-classifier",
        help="accuracy, top-5 and macro/micro P/R/F1 of a model on FOLDER/<class>/…",
        description="Classification metrics of a model on a class-folder data set whose folder names are "
        "the model's class names (e.g. DATA/test of train-classifier).",
    )
    p.add_argument("folder", type=Path)
    p.add_argument("--model", required=True, help="checkpoint, exported model or backbone name")
    p.add_argument(
        "--batch-size", type=int_in(1, 4096), default=64, help="images per batch (default 64)"
    )
    p.add_argument(
        "--input-size",
        type=int_in(8, 4096),
        default=None,
        help="network input side in pixels (default: the model's)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the network runs (default auto: a CUDA GPU if there is one, else the CPU)",
    )
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="also write the report as JSON here"
    )
    p.set_defaults(func=_evaluate_classifier)


def _evaluate_classifier(args) -> int:
    from ..train import evaluate_folder
    from ..utils import atomic_save_json

    report = evaluate_folder(
        args.model,
        args.folder,
        batch_size=args.batch_size,
        device=args.device,
        input_size=args.input_size,
    )
    if args.output:
        atomic_save_json(report, args.output)
    print(json.dumps(report, indent=1))
    return 0


def _run(stage: str, args) -> int:
    from ..train import (
        ClassifierConfig,
        ExpansionConfig,
        train_classifier,
        train_expansion,
    )
    from ..train.config import config_from_args

    if stage == "classifier":
        metrics = train_classifier(config_from_args(ClassifierConfig, args))
    else:
        metrics = train_expansion(config_from_args(ExpansionConfig, args))
    if metrics and int(os.environ.get("RANK", "0")) == 0:
        scalars = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
        print(json.dumps(scalars, indent=1))
    return 0
