"""``hrcam data``: build the data sets the trainers and the evaluation read.

    hrcam data imagenet-animals --imagenet-root /data/imagenet --out data/animals398
    hrcam data fashion-loc --out data/fashion-loc --train-per-class 1000 --test-per-class 200
    hrcam data lesion-volumes --out data/lesions --side 64

Exit status: 0 on success; 1 when ``imagenet-animals`` finds a class with no train or no test
image (the counts are in ``counts.csv``); 2 on bad arguments or unreadable inputs.
"""

from __future__ import annotations

import argparse
import sys

_FAIL = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="build data sets (ImageNet animal subset, Fashion-MNIST and 3-D lesion "
        "localization benchmarks)",
        description="Build the data sets the trainers and the evaluation read.",
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    sub = parser.add_subparsers(dest="data_command", metavar="DATASET")
    _register_imagenet_animals(sub)
    _register_fashion_loc(sub)
    _register_lesion_volumes(sub)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return _FAIL


def _register_imagenet_animals(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "imagenet-animals",
        help="the paper's 398 animal classes of ImageNet as train/ + test/ class folders of links",
        description=(
            "Link the 398 animal classes of ILSVRC-2012 (ImageNet-1k indices 0-397) into "
            "OUT/train/<wnid>_<name>/ and OUT/test/<wnid>_<name>/ (folders sort in index order), "
            "then check the image count of every class (OUT/counts.csv, OUT/summary.json). "
            "Exits 1 if a class has no train or no test image."
        ),
    )
    p.add_argument(
        "--imagenet-root",
        required=True,
        metavar="DIR",
        help="ILSVRC-2012 tree with train/<wnid>/ and val/ (or Kaggle's ILSVRC/Data/CLS-LOC/)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    split = p.add_mutually_exclusive_group()
    split.add_argument(
        "--split",
        choices=["val"],
        default="val",
        help="test images = the official validation split (default)",
    )
    split.add_argument(
        "--test-fraction",
        type=float,
        metavar="F",
        help="instead, move a random fraction F of each class's train images to test/",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of --test-fraction's split (default 0)"
    )
    p.add_argument(
        "--link",
        choices=["symlink", "hardlink", "copy"],
        default="symlink",
        help="how OUT points at the images (default symlink, absolute targets)",
    )
    p.add_argument(
        "--classes",
        default="0-397",
        metavar="SPEC",
        help="class indices, ranges allowed: '0-397' (default), '0-9,150'",
    )
    p.add_argument(
        "--val-labels",
        metavar="FILE",
        help="labels of a flat val/ folder: LOC_val_solution.csv, a file,wnid or file,label "
        "CSV, or the devkit's ILSVRC2012_validation_ground_truth.txt (default: found "
        "in the root)",
    )
    p.add_argument(
        "--devkit-meta",
        metavar="FILE",
        help="the devkit's meta.mat, for the ground-truth .txt (default: beside it)",
    )
    p.add_argument(
        "--folder-names",
        choices=["wnid_name", "wnid"],
        default="wnid_name",
        help="class folder names: n01440764_tench (default) or n01440764",
    )
    p.add_argument(
        "--few-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="flag classes with fewer than F x the median count (default 0.5)",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="remove entries of an earlier run that this run does not make",
    )
    p.add_argument("--dry-run", action="store_true", help="count and report only; write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_imagenet_animals)


def run_imagenet_animals(args: argparse.Namespace) -> int:
    from ..datasets.imagenet_animals import build_imagenet_animals

    try:
        summary = build_imagenet_animals(
            args.imagenet_root,
            args.out,
            classes=args.classes,
            test_fraction=args.test_fraction,
            seed=args.seed,
            link=args.link,
            val_labels=args.val_labels,
            devkit_meta=args.devkit_meta,
            folder_style=args.folder_names,
            few_fraction=args.few_fraction,
            prune=args.prune,
            dry_run=args.dry_run,
            progress=not args.no_progress,
        )
    except (OSError, ValueError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"hrcam data imagenet-animals: error: {err}", file=sys.stderr)
        return _FAIL
    links = summary["links"]
    print(
        f"{summary['num_classes']} classes ({summary['class_indices']}): {summary['train_images']} train, "
        f"{summary['test_images']} test images (test = {summary['test_source']})"
    )
    print(f"index order: {summary['index_check']}")
    if summary["val_notes"]:
        print("validation: " + ", ".join(f"{k} {v}" for k, v in summary["val_notes"].items()))
    if args.dry_run:
        print("dry run: nothing written")
    else:
        print(
            f"{args.link}: {links['new']} new, {links['kept']} kept, {links['replace']} replaced; "
            f"{summary['stale']} stale entries{' removed' if args.prune else ''}"
        )
        print(f"counts: {summary['out']}/counts.csv, summary: {summary['out']}/summary.json")
    if summary["few"]:
        print(f"{len(summary['few'])} classes with few images: {_listing(summary['few'])}")
    if summary["missing"]:
        print(
            f"{len(summary['missing'])} classes with no train or no test image: {_listing(summary['missing'])}",
            file=sys.stderr,
        )
        return 1
    return 0


def _listing(names: list[str], n: int = 10) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names) - n} more)" if len(names) > n else "")


def _register_fashion_loc(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fashion-loc",
        help="a localization benchmark with exact masks: Fashion-MNIST items on cluttered canvases",
        description=(
            "Place each Fashion-MNIST item at a random position and scale on a larger canvas with "
            "clutter (fragments of items of other classes, never touching the object), and write "
            "OUT/train/, OUT/test/ (class folders), OUT/eval/{images,trimaps}/, "
            "OUT/eval/{boxes,labels}.csv, OUT/items.csv and OUT/meta.json."
        ),
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (must not exist unless --overwrite)",
    )
    p.add_argument(
        "--source",
        metavar="DIR",
        help="folder of the idx .gz files (default /usr/share/datasets/fashion-mnist, "
        "from apt-get install dataset-fashion-mnist)",
    )
    p.add_argument("--canvas", type=int, default=96, help="canvas side in pixels (default 96)")
    p.add_argument(
        "--train-per-class",
        type=int,
        default=1000,
        metavar="N",
        help="train canvases per class (default 1000)",
    )
    p.add_argument(
        "--test-per-class",
        type=int,
        default=200,
        metavar="M",
        help="test canvases per class (default 200)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--clutter",
        type=int,
        default=4,
        metavar="K",
        help="clutter fragments per canvas (default 4)",
    )
    p.add_argument(
        "--item-size",
        type=int,
        nargs=2,
        default=(28, 56),
        metavar=("MIN", "MAX"),
        help="side of the scaled item in pixels (default 28 56)",
    )
    p.add_argument(
        "--clutter-size",
        type=int,
        nargs=2,
        default=(8, 14),
        metavar=("MIN", "MAX"),
        help="side of a clutter fragment in pixels (default 8 14)",
    )
    p.add_argument(
        "--mask-threshold",
        type=int,
        default=32,
        help="8-bit intensity from which a scaled item pixel is object (default 32)",
    )
    p.add_argument(
        "--ignore-width",
        type=int,
        default=1,
        help="width of the trimap's ignore ring outside the object (default 1; 0: none)",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes (default: CPU count, at most 8)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_fashion_loc)


def run_fashion_loc(args: argparse.Namespace) -> int:
    from ..datasets.fashion_loc import make_fashion_loc

    try:
        meta = make_fashion_loc(
            args.out,
            canvas=args.canvas,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            clutter=args.clutter,
            seed=args.seed,
            source=args.source,
            item_size=tuple(args.item_size),
            clutter_size=tuple(args.clutter_size),
            mask_threshold=args.mask_threshold,
            ignore_width=args.ignore_width,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (OSError, ValueError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"hrcam data fashion-loc: error: {err}", file=sys.stderr)
        return _FAIL
    n_train, n_test = (sum(meta["counts"][s].values()) for s in ("train", "test"))
    print(
        f"{args.out}: {n_train} train and {n_test} test canvases of {meta['canvas']}x{meta['canvas']} "
        f"({meta['clutter_placed']} clutter fragments) in {meta['seconds']} s"
    )
    if meta["reused_items"]:
        print("note: more canvases per class than Fashion-MNIST items; items were reused")
    return 0


def _register_lesion_volumes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lesion-volumes",
        help="a 3-D localization benchmark with exact voxel masks: textured lesions in NIfTI volumes",
        description=(
            "Write noisy NIfTI volumes, each holding one ellipsoidal lesion whose texture names "
            "its class (spotted, striped, ring) and plain distractors of the same brightness: "
            "OUT/train/, OUT/test/ (class folders for hrcam train-classifier), "
            "OUT/eval/{images,masks}/ and OUT/eval/labels.csv (for hrcam evaluate), "
            "OUT/meta.json."
        ),
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (must not exist unless --overwrite)",
    )
    p.add_argument("--side", type=int, default=64, help="cube side in voxels (default 64)")
    p.add_argument(
        "--train-per-class",
        type=int,
        default=120,
        metavar="N",
        help="train volumes per class (default 120)",
    )
    p.add_argument(
        "--test-per-class",
        type=int,
        default=40,
        metavar="M",
        help="test volumes per class (default 40)",
    )
    p.add_argument(
        "--distractors",
        type=int,
        default=3,
        metavar="K",
        help="plain ellipsoids per volume (default 3)",
    )
    p.add_argument(
        "--radius",
        type=float,
        nargs=2,
        default=(6.0, 11.0),
        metavar=("MIN", "MAX"),
        help="semi-axes of a lesion in voxels (default 6 11)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_lesion_volumes)


def run_lesion_volumes(args: argparse.Namespace) -> int:
    from ..datasets.lesion_volumes import make_lesion_volumes
    from ..medical import ScanError

    try:
        meta = make_lesion_volumes(
            args.out,
            side=args.side,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            distractors=args.distractors,
            radius=tuple(args.radius),
            seed=args.seed,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (OSError, ValueError, ScanError, ImportError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"hrcam data lesion-volumes: error: {err}", file=sys.stderr)
        return _FAIL
    n_train, n_test = (sum(meta["counts"][s].values()) for s in ("train", "test"))
    side = meta["side"]
    print(
        f"{args.out}: {n_train} train and {n_test} test volumes of {side}x{side}x{side} "
        f"in {meta['seconds']} s"
    )
    return 0
