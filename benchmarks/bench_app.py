"""Response time of `hrcam app`'s handlers, without the browser; prints a table.

Drives :class:`hrcam.app.ExplainerSession` exactly as the page's handlers do, on the default
model at 224² on the CPU, over ``--images`` photographs (the bundled ones, then pets-dev if
present), ``--repeats`` times each, and reports the median and the 90th percentile per action:

- **new image**: decode, display copy, one forward pass giving the top-5 and the predicted
  class's CAMs, refinement, three overlays (the issue's budget: under 1 s);
- **another option**: refine again from the cached CAMs, re-draw (budget: under 0.3 s);
- **another class**: that class's CAMs (one pass), refinement, overlays;
- **another opacity / colour map**: re-draw only; **pipeline figure**; **downloads**.

Each image is new to a fresh session in every repeat, so "new image" never hits the cache.
The forward pass alone is timed in the same loop; the last column is each action over it.

    python benchmarks/bench_app.py [--images 8] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hrcam import load_model
from hrcam.app import ExplainerSession
from hrcam.io import find_images, write_demo_images
from hrcam.postprocess import RefineOptions

BUDGET_MS = {"new image": 1000, "another option": 300}


def _images(count: int) -> list[Path]:
    paths = write_demo_images(Path(tempfile.gettempdir()) / "hrcam-demo-images")
    pets = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pets-dev" / "images"
    if pets.is_dir():
        paths += sorted(find_images([pets]))[: max(0, count - len(paths))]
    return paths[:count]


def _timed(times: dict, name: str, fn):
    start = time.perf_counter()
    out = fn()
    times.setdefault(name, []).append(1000 * (time.perf_counter() - start))
    return out


def _one_image(model, session, path, other, out, times) -> None:
    """Every action on one image, as a person would do them, each timed."""
    x = model.prepare(path).x
    with torch.inference_mode():
        _timed(times, "forward pass alone", lambda: model.backbone(x))

    def new_image():
        loaded = session.load(path)
        session.views(loaded.key, loaded.top5[0].index)
        return loaded

    loaded = _timed(times, "new image", new_image)
    top, second = loaded.top5[0].index, loaded.top5[1].index
    _timed(times, "another option", lambda: session.views(loaded.key, top, other))
    _timed(times, "another class", lambda: session.views(loaded.key, second, other))
    views = _timed(
        times,
        "another opacity / colour map",
        lambda: session.views(loaded.key, second, other, opacity=0.8, cmap="turbo"),
    )
    _timed(times, "pipeline figure", lambda: session.pipeline_figure(loaded.key, views))
    _timed(times, "downloads (.npz + 3 PNG)", lambda: session.export(loaded.key, views, out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model("default")
    paths = _images(args.images)
    other = RefineOptions().replace(merge="multiply")
    times: dict[str, list[float]] = {}
    warm = ExplainerSession(model)
    warm.views(warm.load(paths[0]).key, 0)  # imports, colour tables, first allocations
    out = Path(tempfile.mkdtemp(prefix="hrcam-bench-app-"))
    for _ in range(args.repeats):
        session = ExplainerSession(model)
        for path in paths:
            _one_image(model, session, path, other, out, times)
    forward = float(np.median(times["forward pass alone"]))
    print(
        f"hrcam app handlers, default model at 224², {torch.get_num_threads()} CPU thread(s), "
        f"{len(paths)} images × {args.repeats} repeats"
    )
    print("| action | median ms | p90 ms | × forward | budget |")
    print("|---|---:|---:|---:|---|")
    for name, values in times.items():
        median, p90 = float(np.median(values)), float(np.percentile(values, 90))
        budget = BUDGET_MS.get(name)
        verdict = "" if budget is None else f"< {budget} ms: {'met' if p90 < budget else 'missed'}"
        print(f"| {name} | {median:.0f} | {p90:.0f} | {median / forward:.1f} | {verdict} |")


if __name__ == "__main__":
    main()
