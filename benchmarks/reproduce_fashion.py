"""The paper's whole procedure on real data, from scratch, on a CPU — with ``hrcam`` commands only.

Fashion-MNIST's look-alike classes (shirt, T-shirt, pullover, coat …) stand in for the paper's
animal classes; each item is pasted at a random position and scale on a cluttered canvas, so its
exact pixel mask is known (``hrcam data fashion-loc``). Then:

1. stage 1: ``hrcam train-classifier`` trains ``tiny_densenet`` from scratch;
2. stage 2: ``hrcam train-expansion`` trains the expansion network with it frozen;
3. ``hrcam evaluate-classifier`` before and after stage 2 (the metrics must be identical), and
   ``hrcam evaluate`` of the low-res, high-res (guided and the paper's) and refined CAMs against
   Grad-CAM and LayerCAM on the same network.

Prints the commands it runs and a summary table. ``--quick`` is the few-minute version the test
suite runs (tests/test_reproduction.py).

Usage: python benchmarks/reproduce_fashion.py [-o runs/fashion] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

FULL = {
    "canvas": 96,
    "train_per_class": 500,
    "test_per_class": 60,
    "epochs1": 12,
    "epochs2": 4,
    "block_config": "2,2,2,2",
    "growth_rate": 16,
    "batch": 64,
}
QUICK = {
    "canvas": 64,
    "train_per_class": 100,
    "test_per_class": 10,
    "epochs1": 10,
    "epochs2": 2,
    "block_config": "1,1,1,1",
    "growth_rate": 8,
    "batch": 32,
}


def run(cmd: list[str], log: list[str]) -> None:
    text = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {text}", flush=True)
    log.append(text)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def reproduce(out: Path, *, quick: bool, workers: int = 2, progress: bool = True) -> dict:
    cfg = QUICK if quick else FULL
    hrcam = [sys.executable, "-m", "hrcam"]
    quiet = [] if progress else ["--no-progress"]
    data, stage1, stage2 = out / "data", out / "stage1", out / "stage2"
    log: list[str] = []
    started = time.perf_counter()
    if not (data / "meta.json").is_file():
        run(
            [
                *hrcam,
                "data",
                "fashion-loc",
                "--out",
                str(data),
                "--canvas",
                str(cfg["canvas"]),
                "--train-per-class",
                str(cfg["train_per_class"]),
                "--test-per-class",
                str(cfg["test_per_class"]),
                "--seed",
                "0",
                *quiet,
            ],
            log,
        )
    size = str(cfg["canvas"])
    common = [
        "--input-size",
        size,
        "--workers",
        str(workers),
        "--batch-size",
        str(cfg["batch"]),
        "--seed",
        "0",
        *quiet,
    ]
    run(
        [
            *hrcam,
            "train-classifier",
            str(data),
            "-o",
            str(stage1),
            "--backbone",
            "tiny_densenet",
            "--block-config",
            cfg["block_config"],
            "--growth-rate",
            str(cfg["growth_rate"]),
            "--epochs",
            str(cfg["epochs1"]),
            "--lr",
            "3e-3",
            "--augment",
            "flip",
            *common,
        ],
        log,
    )
    run(
        [
            *hrcam,
            "train-expansion",
            str(data / "train"),
            "-o",
            str(stage2),
            "--classifier",
            str(stage1 / "best.pt"),
            "--epochs",
            str(cfg["epochs2"]),
            "--lr",
            "3e-3",
            "--val-fraction",
            "0.1",
            *common,
        ],
        log,
    )
    for name, model in (("before", stage1 / "best.pt"), ("after", stage2 / "best.pt")):
        run(
            [
                *hrcam,
                "evaluate-classifier",
                str(data / "test"),
                "--model",
                str(model),
                "--input-size",
                size,
                "-o",
                str(out / f"classification_{name}_stage2.json"),
            ],
            log,
        )
    # the paper's maps and pipeline (mode=paper), the paper's pipeline on the guided high-res CAM
    # (refined), hrcam's preset, and the peers on the same network
    methods = (
        "low_res,high_res,high_res:mode=paper,refined:mode=paper,refined,refined:preset=hrcam,"
        "gradcam,layercam,layercam_fused"
    )
    run(
        [
            *hrcam,
            "evaluate",
            str(data / "eval"),
            "--model",
            str(stage2 / "best.pt"),
            "--methods",
            methods,
            "--target",
            "label",
            "-o",
            str(out / "eval"),
            "--batch-size",
            "32",
            "--examples",
            "6",
            *quiet,
        ],
        log,
    )
    before = json.loads((out / "classification_before_stage2.json").read_text())
    after = json.loads((out / "classification_after_stage2.json").read_text())
    keys = [k for k in before if k.startswith("test_")]
    summary = {
        "config": cfg,
        "seconds": time.perf_counter() - started,
        "classification_before": {k: before[k] for k in keys},
        "classification_after": {k: after[k] for k in keys},
        "classification_identical": all(before[k] == after[k] for k in keys),
        "localization": json.loads((out / "eval" / "results.json").read_text()),
        "commands": log,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-o", "--output", type=Path, default=Path("runs/fashion"))
    p.add_argument("--quick", action="store_true", help="the few-minute version of the test suite")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    summary = reproduce(args.output, quick=args.quick, workers=args.workers)
    print(f"\nwhole run: {summary['seconds'] / 60:.1f} min")
    print(
        "classification on test/ (before → after stage 2): identical =",
        summary["classification_identical"],
    )
    for k in ("test_accuracy", "test_top5_accuracy", "test_macro_f1"):
        print(
            f"  {k}: {summary['classification_before'][k]:.4f} → {summary['classification_after'][k]:.4f}"
        )
    print()
    print((args.output / "eval" / "results.md").read_text())


if __name__ == "__main__":
    main()
