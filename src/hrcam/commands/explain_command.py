"""``hrcam explain`` (images, folders) and ``hrcam demo`` (bundled photographs, no download)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..postprocess.options import DEFAULT_PRESET
from ..utils import int_in
from .model_args import add_model_arguments, check_memory, load_from_args

# The largest network input side (hrcam.explainer.MAX_INPUT_SIDE, without importing torch).
MAX_INPUT_SIDE = 4096


def _window(text: str) -> tuple[float, float]:
    """``"40,400"`` → ``(40.0, 400.0)``: a window's centre and its width (> 0)."""
    parts = text.replace(" ", "").split(",")
    try:
        centre, width = (float(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a window is CENTRE,WIDTH such as 40,400, got {text!r}"
        ) from None
    if not width > 0:
        raise argparse.ArgumentTypeError(f"a window's width must be > 0, got {text!r}")
    return centre, width


def _add_scan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--window",
        type=_window,
        default=None,
        metavar="CENTRE,WIDTH",
        help="intensity window medical scans are read through, in their own units (e.g. 40,400: "
        "CT soft tissue in HU); default each file's own display window, else its 0.5-99.5th "
        "percentiles. Photographs are not windowed",
    )


def register(subparsers) -> None:
    from ..postprocess.cli_args import add_refine_arguments

    p = subparsers.add_parser(
        "explain",
        help="explain images or folders: top-5 classes, low/high-res and refined CAMs, HTML report",
        description="Explain images: for each, the top-5 classes, the low-res, high-res and "
        "refined CAMs as pictures (JPEG, or PNG with --image-format png), the masked image, the "
        "pipeline figure and the raw maps (maps.npz); for the run, index.html (open it in a "
        "browser) and summary.json. Exit status 1 if any image failed, 2 on bad arguments.",
    )
    p.add_argument("inputs", nargs="*", help="image files and folders (searched recursively)")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("hrcam-out"),
        help="output folder (default hrcam-out): new, empty, or an earlier hrcam output",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into an output folder that holds other files (hrcam never overwrites them)",
    )
    p.add_argument(
        "--target",
        default=None,
        help="explain this class (index or name) in every image; default: each image's prediction",
    )
    add_model_arguments(p)
    p.add_argument(
        "--input-size",
        type=int_in(8, MAX_INPUT_SIDE),
        default=None,
        help=f"network input side in pixels, up to {MAX_INPUT_SIDE} (default: the model's, 224 "
        "for the default model)",
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
    p.add_argument(
        "--finish",
        action="store_true",
        help="only rebuild OUTPUT's summary.json and index.html from the images on disk (after "
        "an interrupted or killed run)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (rate, ETA) on the terminal"
    )
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
    _add_scan_arguments(p)
    _add_output_arguments(p)
    add_refine_arguments(p)
    p.set_defaults(func=run_explain)

    d = subparsers.add_parser(
        "demo",
        help="explain a few bundled photographs (no download) and say where the report is",
        description="Explain four photographs that come with scikit-image (a cat, a cup of "
        "coffee, an astronaut, a rocket: no download) with the default model, write the report "
        "into OUTPUT and print where it is.",
    )
    d.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("hrcam-demo"),
        help="output folder (default hrcam-demo)",
    )
    add_model_arguments(d)
    d.set_defaults(func=run_demo)


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    from ..explain.settings import DEFAULT_CMAP, IMAGE_FORMATS, MAPS_DTYPES

    g = p.add_argument_group("outputs")
    g.add_argument(
        "--image-format",
        choices=IMAGE_FORMATS,
        default="jpeg",
        help="the pictures' format: jpeg (default, ~10x smaller for photographs) or png",
    )
    g.add_argument(
        "--maps-dtype",
        choices=MAPS_DTYPES,
        default="float16",
        help="precision of the maps in maps.npz (default float16; float32 keeps full precision)",
    )
    g.add_argument(
        "--cmap",
        default=DEFAULT_CMAP,
        help=f"colour map of the heat maps (default {DEFAULT_CMAP}; any matplotlib name, e.g. jet)",
    )
    g.add_argument(
        "--opacity",
        type=float,
        default=0.5,
        help="opacity of the CAM over the image in the overlays, in [0, 1] (default 0.5)",
    )
    g.add_argument(
        "--overlay-files",
        action="store_true",
        help="also write the CAMs blended over the image as pictures (overlay_low, ...; the "
        "report blends the coloured CAMs over the image itself)",
    )


def run_explain(args) -> int:
    from ..explain import RunSettings, explain_images, finish_run, merge_shards
    from ..explain.folder import claim_output_folder
    from ..explain.inputs import collect_inputs
    from ..explain.sharding import merge_under_torchrun, parse_shard, under_torchrun
    from ..postprocess import RefineOptions
    from ..postprocess.cli_args import refine_options_from_args

    if args.merge_shards or args.finish:
        summary = merge_shards(args.output) if args.merge_shards else finish_run(args.output)
        print(f"{len(summary.results)} results: {(args.output / 'index.html').resolve()}")
        return 1 if summary.failed else 0
    if not args.inputs:
        raise ValueError("give at least one image file or folder to explain")
    options = refine_options_from_args(args, base=RefineOptions.preset(args.preset))
    outputs = _output_settings(args)
    shard = parse_shard(args.shard)
    # Everything that can be checked without the model first: a bad -o or no image at all
    # fails in a second, before the model loads and before anything is written.
    items, missing = collect_inputs(args.inputs, exclude=[args.output])
    if not items:
        found = "; ".join(missing) or "no image files in " + ", ".join(map(str, args.inputs))
        raise ValueError(f"nothing to explain: {found}")
    folder = claim_output_folder(args.output, force=args.force)
    try:
        explainer = load_from_args(args).replace(
            refine_options=options, flip=args.flip, input_size=args.input_size, window=args.window
        )
        check_memory(explainer.input_size, args.batch_size, explainer.device.type)
        summary = explain_images(
            explainer,
            args.inputs,
            args.output,
            target=args.target,
            run=RunSettings(
                batch_size=args.batch_size,
                skip_existing=args.skip_existing,
                shard=shard,
                show_progress=not args.no_progress and shard[0] == 0,
                force=args.force,
            ),
            outputs=outputs,
            model_name=str(args.model),
        )
    except BaseException:
        folder.release()  # a run that wrote nothing leaves no folder behind
        raise
    if shard[1] > 1 and under_torchrun():
        merged = merge_under_torchrun(args.output, shard)
        if merged is not None:
            print(f"merged {shard[1]} shards, {len(merged.results)} images")
    elif shard[1] > 1:
        print(
            f"shard {shard[0]}/{shard[1]} done; when all are, run: hrcam explain --merge-shards -o {args.output}"
        )
    return _report_outcome(summary, args.output, shard)


def _output_settings(args):
    from ..explain import OutputSettings

    return OutputSettings(
        pipeline_figure=not args.no_pipeline,
        image_format=args.image_format,
        maps_dtype=args.maps_dtype,
        cmap=args.cmap,
        opacity=args.opacity,
        overlay_files=args.overlay_files,
    )


def _report_outcome(summary, output: Path, shard: tuple[int, int]) -> int:
    """Print what happened; exit status 1 when an image failed or none was explained."""
    ok = summary.succeeded
    print(f"explained {ok} image(s), {len(summary.failed)} failed, in {summary.seconds:.1f} s")
    for r in summary.failed:
        print(f"  failed: {r.error}", file=sys.stderr)
    if not summary.results:
        print("hrcam explain: warning: no image files found in the inputs", file=sys.stderr)
    if shard[1] == 1:
        print(f"report: {(output / 'index.html').resolve()}")
    return 1 if summary.failed or ok == 0 else 0


def run_demo(args) -> int:
    from ..explain import RunSettings, explain_images
    from ..explain.folder import claim_output_folder
    from ..io import write_demo_images

    claim_output_folder(args.output)
    inputs = args.output / "inputs"
    write_demo_images(inputs)
    summary = explain_images(
        load_from_args(args),
        [inputs],
        args.output,
        run=RunSettings(batch_size=args.batch_size),
        model_name=str(args.model),
    )
    for r in summary.results:
        if r.ok:
            print(
                f"{Path(r.source).stem:>14}: {r.top5[0]['name']} ({r.top5[0]['probability']:.1%})"
            )
    print(
        f"\nreport: {(args.output / 'index.html').resolve()}\nopen it in a browser (it needs no server)."
    )
    return 1 if summary.failed else 0
