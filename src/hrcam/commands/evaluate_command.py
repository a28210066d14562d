"""``hrcam evaluate``: score and time CAM methods on one model over a localization data set.

    hrcam evaluate ../shared/data/pets-dev --model default \\
        --methods low_res,high_res,refined,gradcam,layercam_fused,scorecam --max-images scorecam=30 -o eval
    hrcam evaluate photos/ --boxes boxes.csv --methods low_res,refined:merge=multiply,gradcam -o eval

Writes ``results.md``, ``results.json``, ``boxacc_vs_threshold.png``, ``pr_curves.png`` (masks
only) and ``examples.png`` into ``-o``. Exit status: 0 when every image was scored; 1 when some
image or annotation could not be read (they are listed, the rest scored); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..utils import (
    check_output_folder,
    cpu_threads,
    int_in,
    non_negative_int,
    positive_int,
    resolve_device,
)

# hrcam.evaluation.FAITHFULNESS_METRICS and hrcam.methods.list_methods(), without importing torch
# for --help (a test keeps them equal).
FAITHFULNESS_CHOICES = ("deletion", "drop", "road", "adcc")
METHOD_NAMES = (
    "low_res", "high_res", "refined", "multiscale",
    "gradcam", "gradcampp", "hirescam", "xgradcam", "layercam", "layercam_fused", "refinecam",
    "refinecam_fused", "finercam", "shapleycam", "eigencam", "scorecam",
    "torchcam_cam", "torchcam_gradcam", "torchcam_gradcampp", "torchcam_xgradcam",
    "torchcam_layercam", "torchcam_refinecam", "torchcam_refinecam_fused", "torchcam_finercam",
)  # fmt: skip


def _faithfulness_metrics(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in FAITHFULNESS_CHOICES]
    if unknown or not chosen:
        what = f"unknown faithfulness metric {unknown[0]!r}" if unknown else "no metric given"
        raise argparse.ArgumentTypeError(f"{what}; choose among {', '.join(FAITHFULNESS_CHOICES)}")
    return chosen


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..postprocess.cli_args import add_refine_arguments

    p = subparsers.add_parser(
        "evaluate",
        help="score and time CAM methods (ours and Grad-CAM & co.) against masks or boxes",
        description=(
            "Run CAM methods on one model over images with pixel masks (images/ + trimaps/, the "
            "Oxford-pets layout) or boxes (a CSV file,x1,y1,x2,y2[,label]); write a Markdown table, "
            "a JSON file and plots. Every map is resized bilinearly to the image's original size "
            "before scoring. Peer methods need pytorch-grad-cam: the compare extra (pip install -e '.[compare]' in the checkout)."
        ),
        epilog="methods: "
        + ", ".join(METHOD_NAMES)
        + ". Any method followed by +guided (e.g. gradcam+guided) is its map at its own "
        "resolution upsampled by hrcam.guided_upsample. A spec can set options, e.g. "
        "refined:focal_scope=local,merge=multiply, gradcam:backward=full (time the library's "
        "out-of-the-box backward pass) or scorecam:batch_size=64 (masked images per forward "
        "pass); list several specs separated by commas.",
    )
    _add_data_arguments(p)
    _add_method_arguments(p)
    _add_run_arguments(p)
    add_refine_arguments(p, prefix="refine-")
    p.set_defaults(func=run_evaluate)


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    from ..evaluation import SPLITS

    p.add_argument(
        "data",
        type=Path,
        help="data folder: images/ + trimaps/, or images + a boxes CSV, or NIfTI volumes in "
        "images/ + masks/ (voxel scores, hrcam's maps and MONAI's CAM, GradCAM, GradCAM++)",
    )
    p.add_argument(
        "--boxes",
        type=Path,
        default=None,
        metavar="CSV",
        help="boxes CSV file,x1,y1,x2,y2[,label] (default: DATA/boxes.csv if present)",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="CSV",
        help="labels CSV file,label[,name] (default: DATA/labels.csv if present)",
    )
    p.add_argument(
        "--skip-unannotated",
        action="store_true",
        help="leave out images without a trimap / box row instead of stopping",
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="all images, or one half of a seeded shuffle (tune on one, report on the other)",
    )
    p.add_argument(
        "--split-seed", type=int, default=0, help="seed of the split's shuffle (default 0)"
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="score N evenly spaced images of the split",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="METHOD",
        help="the method the paired differences are taken from (one of --methods, as written "
        "there; default low_res if run, else the first)",
    )
    p.add_argument(
        "--mask-boxes",
        choices=("components", "union"),
        default="components",
        help="boxes of mask-only data: one per connected component (default) or one around the object",
    )
    p.add_argument(
        "--target",
        choices=("predicted", "label"),
        default="predicted",
        help="explain each image's predicted class (default) or its label (model class indices)",
    )


def _add_method_arguments(p: argparse.ArgumentParser) -> None:
    from ..evaluation import DEFAULT_METHODS

    p.add_argument(
        "--model",
        default="default",
        help="'default', a backbone name (e.g. efficientnet_lite1), or a checkpoint / exported model",
    )
    p.add_argument(
        "--methods",
        action="append",
        default=None,
        metavar="SPECS",
        help=f"comma-separated method specs (repeatable; default: {','.join(DEFAULT_METHODS)})",
    )
    p.add_argument(
        "--max-images",
        action="append",
        default=[],
        metavar="METHOD=N",
        help="run METHOD on N evenly spaced images only (0 = all); repeatable or comma-separated",
    )
    p.add_argument(
        "--slow-subset",
        type=non_negative_int,
        default=50,
        metavar="N",
        help="default N of slow methods (Score-CAM) without --max-images (0 = all; default 50)",
    )
    p.add_argument(
        "--faithfulness",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="also score the maps' faithfulness on N evenly spaced images (slow; see "
        "--faithfulness-metrics)",
    )
    p.add_argument(
        "--faithfulness-metrics",
        type=_faithfulness_metrics,
        default=FAITHFULNESS_CHOICES,
        metavar="LIST",
        help="comma-separated, among deletion (and insertion), drop (average drop, increase, "
        "gain), road (ROAD MoRF/LeRF/combined) and adcc (coherency, complexity, ADCC); "
        "default: all",
    )
    p.add_argument(
        "--faithfulness-steps",
        type=positive_int,
        default=None,
        metavar="S",
        help="deletion/insertion steps (default 224 on images, RISE's; 32 on volumes)",
    )


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, default=Path("hrcam-eval"), help="output folder")
    p.add_argument(
        "--batch-size",
        type=int_in(1, 4096),
        default=16,
        help="images per batch (default 16; Score-CAM still takes one image at a time)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the networks run (default auto: a CUDA GPU if there is one, else the CPU)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads on the CPU (default: OMP_NUM_THREADS when set, else every core); "
        "reported in the results",
    )
    p.add_argument(
        "--examples",
        type=non_negative_int,
        default=4,
        metavar="N",
        help="images in examples.png (default 4)",
    )
    p.add_argument("--no-warmup", action="store_true", help="time the first batch cold")
    p.add_argument("--no-progress", action="store_true")


def parse_max_images(items: list[str]) -> dict[str, int]:
    """``["scorecam=30", "gradcam=10,eigencam=5"]`` → ``{"scorecam": 30, ...}``."""
    out: dict[str, int] = {}
    for item in (s.strip() for text in items for s in text.split(",")):
        if not item:
            continue
        name, eq, value = item.rpartition("=")
        try:
            n = int(value)
        except ValueError:
            n = -1
        if not eq or not name or n < 0:
            raise ValueError(f"--max-images takes METHOD=N with N >= 0 (0 = all), got {item!r}")
        out[name] = n
    return out


def _command_line() -> str | None:
    if Path(sys.argv[0]).name in ("hrcam", "__main__.py") and "evaluate" in sys.argv:
        return shlex.join(["hrcam", *sys.argv[1:]])
    return None


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.volumes import is_volume_dataset

    if is_volume_dataset(args.data):
        return _run_evaluate_volumes(args)
    import torch

    from ..checkpoint import load_model
    from ..data.annotations import LocalizationDataset
    from ..evaluation import DEFAULT_METHODS, evaluate_localization, write_results
    from ..methods import MissingDependencyError, parse_method_list
    from ..postprocess.cli_args import refine_options_from_args

    check_output_folder(args.output)  # first: a bad -o fails at once, not after the work
    max_images = parse_max_images(args.max_images)
    options = refine_options_from_args(args, prefix="refine-")
    device = resolve_device(args.device)
    torch.set_num_threads(cpu_threads(args.threads))
    dataset = LocalizationDataset(
        args.data,
        boxes_csv=args.boxes,
        labels_csv=args.labels,
        missing="skip" if args.skip_unannotated else "error",
    )
    model = load_model(args.model, device=device)
    if args.methods:
        methods = parse_method_list(args.methods)
    else:
        methods = list(DEFAULT_METHODS)
    try:
        results = evaluate_localization(
            model,
            dataset,
            methods,
            batch_size=args.batch_size,
            device=device,
            split=args.split,
            split_seed=args.split_seed,
            limit=args.limit,
            max_images=max_images,
            slow_subset=args.slow_subset,
            target=args.target,
            refine_options=options,
            mask_boxes=args.mask_boxes,
            faithfulness=args.faithfulness,
            faithfulness_steps=args.faithfulness_steps or 224,
            faithfulness_metrics=args.faithfulness_metrics,
            num_examples=args.examples,
            reference=args.reference,
            warmup=not args.no_warmup,
            progress=not args.no_progress,
        )
    except MissingDependencyError as err:
        print(f"hrcam evaluate: error: {err}", file=sys.stderr)
        return 2
    results.run.model_argument = str(args.model)
    results.run.unannotated_skipped = list(dataset.skipped)
    paths = write_results(results, args.output, command=_command_line())
    from ..evaluation import markdown_table

    print(markdown_table(results))
    for bad in results.bad_images:
        print(f"  skipped {bad.name}: {bad.error}", file=sys.stderr)
    run = results.run
    print(
        f"\nscored {run.num_scored} image(s), {run.num_bad} skipped, {run.threads} thread(s); "
        f"results: {paths['markdown'].resolve()}"
    )
    return 1 if results.bad_images else 0


def _run_evaluate_volumes(args: argparse.Namespace) -> int:
    """``hrcam evaluate`` on a folder of volumes (images/ + masks/ NIfTI): voxel scores of
    hrcam's maps and MONAI's, see :mod:`hrcam.evaluation.volumes`."""
    import torch

    from ..checkpoint import load_model
    from ..evaluation.volumes import (
        VOLUME_METHODS,
        evaluate_volumes,
        volume_results_markdown,
        write_volume_results,
    )
    from ..methods import MissingDependencyError, parse_method_list

    check_output_folder(args.output)
    device = resolve_device(args.device)
    torch.set_num_threads(cpu_threads(args.threads))
    model = load_model(args.model, device=device)
    methods = parse_method_list(args.methods) if args.methods else list(VOLUME_METHODS)
    steps = args.faithfulness_steps or 32
    try:
        results = evaluate_volumes(
            model,
            args.data,
            methods,
            split=args.split,
            split_seed=args.split_seed,
            limit=args.limit,
            target=args.target,
            faithfulness=args.faithfulness,
            faithfulness_steps=steps,
            examples=args.examples,
            progress=not args.no_progress,
        )
    except (MissingDependencyError, ValueError) as err:
        print(f"hrcam evaluate: error: {err}", file=sys.stderr)
        return 2
    results["run"]["model_argument"] = str(args.model)
    paths = write_volume_results(results, args.output, command=_command_line())
    print(volume_results_markdown(results))
    for bad in results["bad"]:
        print(f"  skipped {bad['name']}: {bad['error']}", file=sys.stderr)
    print(f"\nresults: {paths['markdown'].resolve()}")
    return 1 if results["bad"] else 0
