"""Speed of the refinement pipeline (the refined CAM): NumPy reference, compiled steps (Numba;
``hrcam.refine``) and batched PyTorch.

Inputs are realistic synthetic CAM pairs (:func:`hrcam.postprocess.synthetic.make_cams`: a 7x7
low-res CAM of a few Gaussian blobs, a textured high-res CAM with noise) with a uint8 image, so
every step runs, the masked image included. Prints two tables:

1. implementation, size, batch, median wall-clock ms per image, images per second (from
   that median), median CPU ms per image, and the number of images timed. The one-image paths
   (``numpy``, the reference; ``compiled``, what ``hrcam.refine`` runs) are
   timed image by image (medians of the per-image times); the PyTorch path batch by batch
   (median batch time divided by the batch size). Rows use hrcam's preset (what ``hrcam
   explain`` runs) unless they say ``paper's options``; ``..., CAMs only`` leaves out the image
   (step 10). CPU time counts only the time this process ran (summed over its threads), so
   on a machine that other processes share it is close to what an idle CPU would give; for
   the single-threaded NumPy path it equals the wall-clock time when the CPU is idle.
2. the one-image paths' median time per step at the first size, side by side.

Threads: the one-image paths are single-threaded (NumPy's element-wise ops, OpenCV's labelling
with OpenCV's pool off as in hrcam's commands, and the compiled loops run on one core). The
PyTorch CPU path runs once per ``--threads`` value (default: 1 and every core this process may
use), set with ``torch.set_num_threads``; on a small machine that other processes share, one
thread is often faster, because intra-op threads wait for each other
whenever another process holds a core. The load average is printed before and after, since
other processes skew CPU timings; compare rows of one run.

Usage::

    python benchmarks/bench_refine.py                       # 224: 500 images; 512, 1024 fewer
    python benchmarks/bench_refine.py --sizes 224 --images 1000 --batch 64 --threads 2
    python benchmarks/bench_refine.py --device cuda --batch 256 --skip-numpy
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np
import torch

from hrcam.postprocess import RefineOptions, batched, compiled, reference, refine_batch
from hrcam.postprocess.pipeline import run_steps
from hrcam.postprocess.synthetic import make_cams
from hrcam.utils import sequential_opencv

# The one-image implementations: hrcam.refine is the compiled one (the reference without Numba).
BACKENDS = {"numpy": reference} | ({"compiled": compiled} if compiled is not None else {})


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 512, 1024])
    p.add_argument(
        "--images",
        type=int,
        default=500,
        help="images at 224x224; larger sizes use fewer, in proportion to the area (min 8)",
    )
    p.add_argument("--batch", type=int, default=64, help="PyTorch batch size on the CPU")
    p.add_argument("--cuda-batch", type=int, default=256, help="PyTorch batch size on a GPU")
    cores = len(os.sched_getaffinity(0))
    p.add_argument("--threads", type=int, nargs="+", default=sorted({1, cores}))
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--skip-numpy", action="store_true")
    p.add_argument("--skip-torch-cpu", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p


def images_for(size: int, base: int) -> int:
    return max(8, round(base * (224 * 224) / (size * size)))


def time_numpy(refine, low, high, images, options=None) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds per image for ``refine`` (a one-image backend's), image by image,
    with ``options`` (default: hrcam's preset, as ``hrcam explain`` runs it)."""
    refine(low[0], high[0], None if images is None else images[0], options=options)  # warm-up
    wall, cpu = [], []
    for i in range(len(low)):
        image = None if images is None else images[i]
        start, start_cpu = time.perf_counter(), time.process_time()
        refine(low[i], high[i], image, options=options)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def time_torch(
    low, high, images, batch: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds per batch for :func:`refine_batch` (inputs already on ``device``)."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    refine_batch(low[:batch], high[:batch], images[:batch])  # warm-up
    sync()
    wall, cpu = [], []
    for i in range(0, len(low) - batch + 1, batch):
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        refine_batch(low[i : i + batch], high[i : i + batch], images[i : i + batch])
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


class _TimedBackend:
    """A one-image backend with every step function timed (CPU time of this thread), so the
    per-step table times exactly the calls ``refine`` makes (``pipeline.run_steps``)."""

    def __init__(self, backend, steps: dict[str, list[float]]) -> None:
        self._backend = backend
        self._steps = steps

    def __getattr__(self, name):
        fn = getattr(self._backend, name)
        if not callable(fn):
            return fn

        def timed(*args, **kwargs):
            start = time.thread_time()
            out = fn(*args, **kwargs)
            self._steps.setdefault(name, []).append(time.thread_time() - start)
            return out

        return timed


def time_numpy_steps(backend, low, high, images, options: RefineOptions) -> dict[str, float]:
    """Median CPU seconds of each step of a one-image backend over the given images, and of
    what its ``refine`` does besides the steps (input checks, conversion, the result)."""
    steps: dict[str, list[float]] = {}
    ops = _TimedBackend(backend, steps)
    whole = []
    for i in range(len(low)):
        start = time.thread_time()
        backend.refine(low[i], high[i], images[i], options=options)
        whole.append(time.thread_time() - start)
        run_steps(ops, low[i], high[i], images[i], options)
    medians = {name: float(np.median(t)) for name, t in steps.items()}
    medians["checks, conversion, result (refine minus the steps)"] = max(
        0.0, float(np.median(whole)) - sum(medians.values())
    )
    return medians


def grow_by_dilation(in_range: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Region growing the obvious way: dilate the seeds by one pixel per pass (the baseline)."""
    grown = seeds & in_range
    passes = 0
    while True:
        passes += 1
        step = grown.clone()
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        step[:, :, 1:] |= grown[:, :, :-1]
        step[:, :, :-1] |= grown[:, :, 1:]
        step &= in_range
        if torch.equal(step, grown):
            return grown, passes
        grown = step


def time_region_growing(low, high, device: torch.device) -> tuple[float, int, float, int]:
    """(s/image, passes) of the batched pointer-jumping growing and of dilation, same inputs."""
    steps = refine_batch(low.to(device), high.to(device))
    lower, upper = steps.bounds[:, 0], steps.bounds[:, 1]
    in_range = (steps.edges >= lower[:, None, None]) & (steps.edges <= upper[:, None, None])
    results = []
    for method in ("jump", "dilate"):
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            if method == "jump":
                grown = batched.grow_region(
                    steps.edges, steps.focal_points, lower=lower, upper=upper
                )
            else:
                grown, passes = grow_by_dilation(in_range, steps.focal_points)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        assert torch.equal(grown, steps.segmented)
        if method == "jump":
            passes = batched._label_components(in_range, values=None, connectivity=4)[2]
        results += [best / len(low), passes]
    return tuple(results)


def row(name: str, size: int, batch: int, times: tuple[list[float], list[float]]) -> str:
    """A table row from (wall, CPU) per-image (batch 1) or per-batch times in seconds."""
    wall, cpu = times
    median, median_cpu = float(np.median(wall)) / batch, float(np.median(cpu)) / batch
    cpu_text = f"{median_cpu * 1e3:>9.3f}" if name != "torch cuda" else f"{'-':>9}"
    return (
        f"| {name:<22} | {size:>4}x{size:<4} | {batch:>5} | {median * 1e3:>9.3f} "
        f"| {1 / median:>9.0f} | {cpu_text} | {len(wall) * batch:>6} |"
    )


def main(args: argparse.Namespace) -> None:
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU is visible to PyTorch")
    print(
        f"# refine benchmark: {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, torch {torch.__version__}"
        + (f", GPU {torch.cuda.get_device_name()}" if use_cuda else ", no GPU")
    )
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(args.seed)
    lines = []
    growing = []
    step_table = None
    for size in args.sizes:
        n = images_for(size, args.images)
        low, high, images = make_cams(rng, n, high_shape=(size, size))
        if not args.skip_numpy:
            for name, backend in BACKENDS.items():
                fn = backend.refine
                lines.append(row(name, size, 1, time_numpy(fn, low, high, images)))
                lines.append(row(f"{name}, CAMs only", size, 1, time_numpy(fn, low, high, None)))
                paper = time_numpy(fn, low, high, images, RefineOptions.preset("paper"))
                lines.append(row(f"{name}, paper's options", size, 1, paper))
            if step_table is None:
                step_table = (
                    size,
                    n,
                    {
                        name: time_numpy_steps(backend, low, high, images, RefineOptions())
                        for name, backend in BACKENDS.items()
                    },
                )
        tl, th, ti = (torch.from_numpy(a) for a in (low, high, images))
        if not args.skip_torch_cpu:
            batch = min(args.batch, n)
            for threads in args.threads:
                torch.set_num_threads(threads)
                times = time_torch(tl, th, ti, batch, torch.device("cpu"))
                name = f"torch cpu, {threads} thread" + ("s" if threads > 1 else "")
                lines.append(row(name, size, batch, times))
        growing_device = torch.device("cuda" if use_cuda else "cpu")
        torch.set_num_threads(max(args.threads))
        m = min(16, n)
        jump_s, jump_passes, dilate_s, dilate_passes = time_region_growing(
            tl[:m], th[:m], growing_device
        )
        growing.append((size, m, growing_device.type, jump_s, jump_passes, dilate_s, dilate_passes))
        if use_cuda:
            dev = torch.device("cuda")
            batch = min(args.cuda_batch, max(1, n))
            reps = max(1, (4 * batch + n - 1) // n)  # at least 4 timed batches
            tl, th, ti = (torch.cat([t] * reps).to(dev) for t in (tl, th, ti))
            times = time_torch(tl, th, ti, batch, dev)
            lines.append(row("torch cuda", size, batch, times))
        del low, high, images

    print()
    print(
        f"| {'implementation':<22} | {'size':^9} | batch | ms/image  | images/s  "
        "| CPU ms    | images |"
    )
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 7}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 8}|")
    print("\n".join(lines))
    if step_table is not None:
        size, n, tables = step_table
        names = list(tables)
        print()
        print(
            f"One-image paths, median CPU ms per step at {size}x{size} over {n} images "
            "(the paper's options):"
        )
        print(f"| {'step':<52} | " + " | ".join(f"{name:>9}" for name in names) + " |")
        print(f"|{'-' * 54}|" + "|".join("-" * 11 for _ in names) + "|")
        for step in tables[names[0]]:
            cells = " | ".join(f"{tables[name].get(step, 0.0) * 1e3:9.3f}" for name in names)
            print(f"| {step:<52} | {cells} |")
        totals = " | ".join(f"{sum(tables[name].values()) * 1e3:9.3f}" for name in names)
        print(f"| {'refine, in all':<52} | {totals} |")
    if growing:
        print()
        print("Region growing alone (step 7), batched: pointer jumping vs one dilation per pass")
        print("(the grown regions are identical; passes = the batch's pass count):")
        print("| size      | batch | device | jumping ms/img | passes | dilation ms/img | passes |")
        print("|-----------|-------|--------|----------------|--------|-----------------|--------|")
        for size, m, dev, js, jp, ds, dp in growing:
            print(
                f"| {size:>4}x{size:<4} | {m:>5} | {dev:<6} | {js * 1e3:>14.3f} | {jp:>6} "
                f"| {ds * 1e3:>15.3f} | {dp:>6} |"
            )
    print(f"\n# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    with sequential_opencv():  # as hrcam's commands run it (labelling is OpenCV's)
        main(get_args_parser().parse_args())
