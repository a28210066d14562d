"""``hrcam explain`` (images, folders) and ``hrcam demo`` (bundled photographs, no download)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..postprocess.options import DEFAULT_PRESET
from ..utils import positive_int, resolve_device


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="default",
        help="'default' (EfficientNet-Lite0 + shipped expansion network), a backbone name, "
        "or a checkpoint / exported model file",
    )
    p.add_argument(
        "--high-res",
        choices=("auto", "paper", "guided"),
        default="auto",
        help="high-res CAM: hrcam's guided upsampling of the low-res CAM (any model; 'auto' is "
        "guided), or the paper's expansion-network maps (a model with one, e.g. the default)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=positive_int, default=8)


def register(subparsers) -> None:
    from ..postprocess.cli_args import add_refine_arguments

    p = subparsers.add_parser(
        "explain",
        help="explain images or folders: top-5 classes, low/high-res and refined CAMs, HTML report",
        description="Explain images: for each, the top-5 classes and PNG overlays of the low-res, "
        "high-res and refined CAMs, the pipeline figure, the masked image and the raw maps; "
        "for the run, index.html and summary.json. Exit status 1 if any image failed.",
    )
    p.add_argument("inputs", nargs="*", help="image files and folders (searched recursively)")
    p.add_argument("-o", "--output", type=Path, default=Path("hrcam-out"), help="output folder")
    p.add_argument(
        "--target",
        default=None,
        help="explain this class (index or name) in every image; default: each image's prediction",
    )
    _add_model_arguments(p)
    p.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="network input side (default: the model's)",
    )
    p.add_argument(
        "--no-pipeline", action="store_true", help="skip the per-image pipeline figure (faster)"
    )
    p.add_argument(
        "--skip-existing", action="store_true", help="keep images already explained in OUTPUT"
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="process only shard I of N (0-based); under torchrun the rank picks the shard",
    )
    p.add_argument(
        "--merge-shards", action="store_true", help="only merge the shard summaries in OUTPUT"
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--preset",
        choices=("hrcam", "paper"),
        default=DEFAULT_PRESET,
        help="refinement options to start from: hrcam's tuned ones (default) or the paper's; "
        "the options below change single values",
    )
    p.add_argument(
        "--flip",
        action="store_true",
        help="test-time mirroring: average each CAM with the mirrored image's (twice the cost)",
    )
    add_refine_arguments(p)
    p.set_defaults(func=run_explain)

    d = subparsers.add_parser(
        "demo", help="explain a few bundled photographs (no download) and say where the report is"
    )
    d.add_argument("-o", "--output", type=Path, default=Path("hrcam-demo"))
    _add_model_arguments(d)
    d.set_defaults(func=run_demo)


def _load(args):
    import torch

    from ..checkpoint import load_model

    device = resolve_device(args.device)
    if device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    return load_model(args.model, device=device, high_res=args.high_res)


def _shard(args) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.shard:
        try:
            i, n = (int(v) for v in args.shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard takes I/N, e.g. 0/4; got {args.shard!r}") from None
        return i, n
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


def run_explain(args) -> int:
    from ..explain import explain_images, merge_shards
    from ..postprocess.cli_args import refine_options_from_args

    if args.merge_shards:
        summary = merge_shards(args.output)
        print(f"merged {len(summary.results)} results: {args.output / 'index.html'}")
        return 1 if summary.failed else 0
    if not args.inputs:
        raise ValueError("give at least one image file or folder to explain")
    from ..postprocess import RefineOptions

    options = refine_options_from_args(args, base=RefineOptions.preset(args.preset))
    shard = _shard(args)
    model = _load(args)
    summary = explain_images(
        model,
        args.inputs,
        args.output,
        target=args.target,
        options=options,
        batch_size=args.batch_size,
        input_size=args.input_size,
        pipeline_figures=not args.no_pipeline,
        skip_existing=args.skip_existing,
        shard=shard,
        model_name=str(args.model),
        show_progress=not args.no_progress and shard[0] == 0,
        flip=args.flip,
    )
    if shard[1] > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _merge_under_torchrun(args.output, shard)
    elif shard[1] > 1:
        print(
            f"shard {shard[0]}/{shard[1]} done; when all are, run: hrcam explain --merge-shards -o {args.output}"
        )
    ok = len(summary.results) - len(summary.failed)
    print(f"explained {ok} image(s), {len(summary.failed)} failed, in {summary.seconds:.1f} s")
    for r in summary.failed:
        print(f"  failed: {r.error}", file=sys.stderr)
    if shard[1] == 1:
        print(f"report: {(args.output / 'index.html').resolve()}")
    return 1 if summary.failed else 0


def _merge_under_torchrun(output: Path, shard: tuple[int, int]) -> None:
    import torch.distributed as dist

    from ..explain import merge_shards

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()
    if shard[0] == 0:
        summary = merge_shards(output, expected=shard[1])
        print(
            f"merged {shard[1]} shards, {len(summary.results)} images: {(output / 'index.html').resolve()}"
        )
    dist.barrier()
    dist.destroy_process_group()


DEMO_IMAGES = ("chelsea", "coffee", "astronaut", "rocket")


def run_demo(args) -> int:
    from PIL import Image
    from skimage import data

    from ..explain import explain_images

    inputs = args.output / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for name in DEMO_IMAGES:
        path = inputs / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(data, name)()).save(path)
    from ..postprocess import RefineOptions

    model = _load(args)
    summary = explain_images(
        model,
        [inputs],
        args.output,
        batch_size=args.batch_size,
        model_name=str(args.model),
        options=RefineOptions.default(),
    )
    for r in summary.results:
        if r.ok:
            print(f"{r.name:>14}: {r.top5[0]['name']} ({r.top5[0]['probability']:.1%})")
    print(
        f"\nreport: {(args.output / 'index.html').resolve()}\nopen it in a browser (it needs no server)."
    )
    return 1 if summary.failed else 0
