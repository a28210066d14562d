"""Throughput at the paper's scale: stage-2 training steps and explaining, in images per second.

The device check of the multi-GPU route (README, "Several GPUs or machines"): on one device it
times, with the batch on the device and after warm-up steps,

1. a stage-2 training step (frozen localization network forward, expansion network forward,
   the paper's reconstruction loss, backward, AdamW step) — the work of ``hrcam train-expansion``,
   through the very functions it calls;
2. the classifier's forward pass alone (``Explainer.logits``), the reference of every ratio;
3. ``Explainer.cams`` (prediction + low-res + high-res CAM, the default guided mode and the
   paper's decoder mode);
4. the batched refinement (``refine_batch``, hrcam preset, masked image included);
5. 3 and 4 together, as ``hrcam explain`` runs them;
6. the faithfulness metrics ``hrcam evaluate --faithfulness`` computes per image and method
   (deletion/insertion at 224 steps, Average Drop/Increase, ROAD at 4 percentiles, ADCC), on
   ``--faithfulness-batch`` images (their images/s: maps scored per second).

``--precision bf16|fp16`` runs 2-6 under autocast in that type (the stage-2 step trains in
bfloat16, as ``--amp`` trains, for either); ``--channels-last`` lays the inputs and networks
out channels-last.

Inputs are scikit-image's photographs (no download) resized to ``--size`` and tiled to the batch,
so region growing sees real content. Models: the shipped default (EfficientNet-Lite0) and
DenseNet-121 (the paper's family; random weights, which cost the same). Prints a table; with
``--json`` also writes it.

Usage::

    python benchmarks/bench_throughput.py --device cuda --precision bf16 --channels-last  # GPU
    python benchmarks/bench_throughput.py --device cpu --train-batch 8 --explain-batch 16 \
        --faithfulness-batch 4 --steps 3
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import statistics
import time

import numpy as np
import torch
from PIL import Image

import hrcam
from hrcam.checkpoint import load_model
from hrcam.evaluation.faithfulness_scores import score_faithfulness
from hrcam.methods import create_method
from hrcam.postprocess import RefineOptions, refine_batch
from hrcam.train.distributed import distributed
from hrcam.train.loop import make_optimizer
from hrcam.train.stage2_expansion import _DecodeForDDP, expansion_loss
from hrcam.upsample.expansion import ExpansionNetwork


def _photos(model: hrcam.Explainer, size: int, batch: int, device) -> hrcam.ImageBatch:
    from skimage import data

    arrays = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    prepared = model.replace(input_size=size).prepare([Image.fromarray(a) for a in arrays])
    rows = [i % len(arrays) for i in range(batch)]
    images = prepared.select(rows)
    return hrcam.ImageBatch(images.x.to(device), images.pixels.to(device), images.rgb)


def _timed(fn, *, steps: int, warmup: int, device) -> list[float]:
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return times


def _models(names: list[str]) -> list[tuple[str, hrcam.Explainer]]:
    out = []
    for name in names:
        if name == "default":
            out.append(("efficientnet_lite0 (shipped)", load_model("default")))
        else:
            backbone = hrcam.create_backbone(name)
            out.append((f"{name} (random init)", hrcam.Explainer(backbone)))
    return out


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def _bench_model(model_name: str, model: hrcam.Explainer, *, args, ctx, report) -> None:
    device = ctx.device
    amp = args.precision != "fp32"
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    backbone = model.backbone.to(device).eval().requires_grad_(False)
    backbone.to(memory_format=memory_format)

    def reset_peak() -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def timed(fn) -> list[float]:
        return _timed(fn, steps=args.steps, warmup=args.warmup, device=device)

    # 1. stage-2 training step: a fresh expansion network, as train-expansion builds it
    expansion = ExpansionNetwork.from_backbone(backbone).to(device).train()
    expansion.to(memory_format=memory_format)
    decoder = _DecodeForDDP(expansion).to(device)
    optimizer = make_optimizer("adamw", list(expansion.parameters()), lr=1e-4, weight_decay=0)
    x_train = _photos(model, args.size, args.train_batch, device).x
    x_train = x_train.contiguous(memory_format=memory_format)

    def train_step() -> None:
        loss, _ = expansion_loss(
            backbone,
            decoder,
            x_train,
            consistency_weight=0.0,
            ctx=ctx,
            amp=amp,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    reset_peak()
    what = "stage-2 training step" + (" (bf16)" if amp and device.type == "cuda" else "")
    report(model_name, what, args.train_batch, timed(train_step))

    # 2-4. explaining: the model as hrcam explain uses it (eval mode, no gradients)
    if model.expansion is None:
        model = hrcam.Explainer(backbone, expansion=expansion.eval())
    model = model.replace(input_size=args.size).to(device).eval()
    batch = _photos(model, args.size, args.explain_batch, device)
    batch = hrcam.ImageBatch(
        batch.x.contiguous(memory_format=memory_format), batch.pixels, batch.rgb
    )
    options = RefineOptions()
    images = torch.from_numpy(batch.rgb).to(device)
    explainers = {mode: model.replace(upsampler=mode) for mode in ("guided", "paper")}

    def cams():
        with torch.inference_mode(), _autocast(device, args.precision):
            return explainers[mode].cams(batch)

    def forward():
        with torch.inference_mode(), _autocast(device, args.precision):
            return model.logits(batch.x)

    reset_peak()
    report(model_name, "forward pass (Explainer.logits)", args.explain_batch, timed(forward))

    def refine(result):
        low, high = result.low_res.float(), result.high_res.float()
        return refine_batch(low, high, images, options=options, device=device)

    for mode in ("guided", "paper"):
        reset_peak()
        report(model_name, f"Explainer.cams ({mode})", args.explain_batch, timed(cams))
        if mode == "guided":
            reset_peak()
            report(
                model_name,
                "refine_batch (hrcam preset)",
                args.explain_batch,
                timed(functools.partial(refine, cams())),
            )
        reset_peak()
        report(
            model_name,
            f"Explainer.cams ({mode}) + refine_batch",
            args.explain_batch,
            timed(lambda: refine(cams())),
        )

    # 6. the faithfulness metrics of one method's maps, as evaluate scores them
    mode = "guided"
    scored = batch.select(list(range(min(args.faithfulness_batch, args.explain_batch))))
    result = explainers[mode].cams(scored)
    method = create_method("low_res")
    maps = result.low_res.float()

    def faithfulness():
        with _autocast(device, args.precision):
            score_faithfulness(
                model,
                method,
                scored,
                maps,
                result.targets,
                {},
                batch_size=args.explain_batch if device.type == "cuda" else model.cpu_chunk,
            )

    reset_peak()
    report(
        model_name,
        "faithfulness metrics (deletion/insertion, drop, ROAD, ADCC)",
        len(scored),
        _timed(faithfulness, steps=max(1, args.steps // 10), warmup=1, device=device),
    )


def _rate(per_second: float) -> str:
    return f"{per_second:.0f}" if per_second >= 10 else f"{per_second:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--models", default="default,densenet121")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--explain-batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per row (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--faithfulness-batch", type=int, default=32, help="images scored per row")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--amp", action="store_true", help="the same as --precision bf16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args()
    if args.amp:
        args.precision = "bf16"
    if args.threads:
        torch.set_num_threads(args.threads)
    with distributed(args.device) as ctx:
        _run(args, ctx)


def _run(args, ctx) -> None:
    device = ctx.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device: {device} ({name or platform.machine()}), torch {torch.__version__}, "
        f"precision={args.precision}, channels_last={args.channels_last}, {torch.get_num_threads()} CPU threads"
    )
    rows = []

    def report(model_name: str, what: str, batch: int, times: list[float]) -> None:
        median = statistics.median(times)
        peak = (
            torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda"
            else float("nan")
        )
        rows.append(
            {
                "model": model_name,
                "what": what,
                "batch": batch,
                "ms_per_batch": median * 1e3,
                "images_per_s": batch / median,
                "peak_gpu_gib": peak,
                "steps": len(times),
            }
        )
        r = rows[-1]
        print(
            f"| {model_name} | {what} | {batch} | {r['ms_per_batch']:.1f} | "
            f"{_rate(r['images_per_s'])} | {peak:.1f} |",
            flush=True,
        )

    print("\n| model | work | batch | ms/batch | images/s | peak GPU GiB |")
    print("|---|---|---:|---:|---:|---:|")
    for model_name, model in _models([m for m in args.models.split(",") if m]):
        _bench_model(model_name, model, args=args, ctx=ctx, report=report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"device": str(device), "name": name, "args": vars(args), "rows": rows}, f, indent=1
            )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
