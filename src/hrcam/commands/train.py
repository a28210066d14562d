"""``hrcam train-classifier`` (stage 1) and ``hrcam train-expansion`` (stage 2)."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    from ..train import classifier, expansion

    p = subparsers.add_parser(
        "train-classifier",
        help="stage 1: train or fine-tune the localization network on DATA/train, test on DATA/test",
        description=classifier.__doc__,
    )
    classifier.get_args_parser(p)
    p.set_defaults(func=lambda args: _run(classifier.main, args))

    p = subparsers.add_parser(
        "train-expansion",
        help="stage 2: train the expansion network (reconstruction) with the classifier frozen",
        description=expansion.__doc__,
    )
    expansion.get_args_parser(p)
    p.set_defaults(func=lambda args: _run(expansion.main, args))

    p = subparsers.add_parser(
        "evaluate-classifier",
        help="accuracy, top-5 and macro/micro P/R/F1 of a model on FOLDER/<class>/…",
        description="Classification metrics of a model on a class-folder data set whose folder names are "
        "the model's class names (e.g. DATA/test of train-classifier).",
    )
    p.add_argument("folder", type=Path)
    p.add_argument("--model", required=True, help="checkpoint, exported model or backbone name")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="also write the report as JSON here"
    )
    p.set_defaults(func=_evaluate_classifier)


def _evaluate_classifier(args) -> int:
    from ..train.classifier import evaluate_folder
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


def _run(main, args) -> int:
    import torch.distributed as dist

    try:
        metrics = main(args)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if metrics and (not dist.is_available() or int(__import__("os").environ.get("RANK", "0")) == 0):
        print(
            json.dumps(
                {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=1
            )
        )
    return 0
