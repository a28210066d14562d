"""``hrcam train-classifier`` (stage 1) and ``hrcam train-expansion`` (stage 2)."""

from __future__ import annotations

import json


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


def _run(main, args) -> int:
    import torch.distributed as dist

    try:
        metrics = main(args)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if metrics and (not dist.is_available() or int(__import__("os").environ.get("RANK", "0")) == 0):
        print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=1))
    return 0
