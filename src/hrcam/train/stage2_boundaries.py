"""Stage 2 on object boundaries: train the expansion network's boundary head, the classifier
frozen (``hrcam train-expansion --objective boundary-distill|affinity|boundary-distill+affinity``).

The head (:class:`hrcam.upsample.boundary_head.BoundaryHead`) reads the frozen localization
network's stage features and predicts object boundaries on a grid four times coarser than the
input; the boundary upsampler walks the guided high-res CAM over them. Labels are never read:

- ``boundary-distill``: HED's boundaries (:mod:`hrcam.upsample.hed`, trained on BSDS500's
  human-drawn object outlines), max-pooled to the head's grid, as soft targets (binary
  cross-entropy) — the teacher distilled, so that explaining runs no HED;
- ``affinity``: IRNet's inter-pixel relations from the classifier's own confident regions
  (:func:`hrcam.upsample.boundary_head.affinity_loss` on the guided high-res CAM of its top
  class).

A **teacher pass** first runs what the objectives need on every training and held-out image
once — the network-sized picture (decoded and resized as ``hrcam explain`` does), HED's
boundaries, the CAM — and saves it in one file (``--teacher``, default ``OUTPUT/teacher.pt``).
Training then reads that file alone (the classifier runs on its pictures, mirrored at random),
so a later run, a resumed one, or one on a GPU machine with the file copied over skips the
teacher. The classifier is checked bit-identical at the end (its parameters never reach the
optimiser).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..upsample.boundary_head import BoundaryHead, affinity_loss
from ..utils import atomic_save_json, atomic_torch_save
from .config import ExpansionConfig
from .distributed import DistContext, wrap_ddp
from .loop import make_loaders, progress, setup_optimization, start_run

__all__ = ["TeacherImages", "boundary_loss", "make_teacher", "train_boundaries"]

logger = logging.getLogger("hrcam.train")

TEACHER_FORMAT = 1


def _file_key(path: Path) -> list:
    stat = path.stat()
    return [str(path), int(stat.st_size), int(stat.st_mtime_ns)]


def make_teacher(
    explainer,
    files: list[Path],
    *,
    hed: bool,
    show_progress: bool = True,
    batch_size: int = 16,
) -> dict[str, Any]:
    """The teacher pass (the module doc) over ``files``: ``{"keys": [path, size, mtime] per
    readable file, "images": (N, 3, H, W) uint8, "hed": (N, h, w) uint8 or None, "cam": (N, h,
    w) float16, "unreadable": [paths]}`` with ``h × w`` the boundary head's grid (a quarter of
    the input's sides). Files are decoded one by one (an unreadable one is skipped and named),
    the networks run ``batch_size`` pictures at a time."""
    from ..upsample.hed import load_hed

    teacher_net = load_hed().to(explainer.device) if hed else None
    keys, pictures, hed_maps, cams, unreadable = [], [], [], [], []

    def run(group: list[np.ndarray]) -> None:
        batch = explainer.prepare(group)  # pictures at the network's size: not resized again
        with torch.inference_mode():
            cam = explainer.cams(batch).high_res[:, None].float()
            grid = (math.ceil(cam.shape[-2] / 4), math.ceil(cam.shape[-1] / 4))
            cams.append(F.adaptive_avg_pool2d(cam, grid)[:, 0].half().cpu())
            if teacher_net is not None:
                edges = teacher_net(batch.pixels.float())[:, None]
                pooled = F.adaptive_max_pool2d(edges, grid)[:, 0]
                hed_maps.append((pooled * 255).round().to(torch.uint8).cpu())

    group: list[np.ndarray] = []
    for path in progress(
        files, total=len(files), desc="teacher", enabled=show_progress, unit="image"
    ):
        try:
            picture = explainer.prepare([path]).rgb[0]
        except (OSError, ValueError) as err:
            logger.warning("skipping unreadable image: %s", err)
            unreadable.append(str(path))
            continue
        pictures.append(picture)
        keys.append(_file_key(Path(path)))
        group.append(picture)
        if len(group) == batch_size:
            run(group)
            group = []
    if group:
        run(group)
    if not keys:
        raise ValueError("no readable image for the teacher pass")
    return {
        "format": TEACHER_FORMAT,
        "keys": keys,
        "images": torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous(),
        "hed": torch.cat(hed_maps) if hed_maps else None,
        "cam": torch.cat(cams),
        "unreadable": unreadable,
    }


def _read_teacher(path: Path, *, needs_hed: bool) -> dict:
    teacher = torch.load(path, weights_only=True)
    if teacher.get("format") != TEACHER_FORMAT or "split" not in teacher:
        raise ValueError(f"{path}: not a teacher file of this hrcam version; make a new one")
    if needs_hed and teacher["hed"] is None:
        raise ValueError(
            f"{path}: made without HED's boundaries (for --objective affinity); "
            "boundary-distill needs a teacher file made with them"
        )
    return teacher


def _teacher(cfg: ExpansionConfig, backbone, ctx: DistContext) -> dict:
    """The run's teacher file: ``--teacher`` as it is when it exists (its images and split, DATA
    not read: e.g. on a GPU machine), else OUTPUT/teacher.pt (or the new ``--teacher``) if made
    from DATA's very files (path, size, modification time), else a new one made from DATA on
    the main process and saved atomically."""
    from ..explainer import Explainer
    from .stage2_expansion import stage2_files

    needs_hed = "boundary-distill" in cfg.objective
    if cfg.teacher is not None and cfg.teacher.is_file():
        logger.info("teacher: %s (DATA is not read)", cfg.teacher)
        return _read_teacher(cfg.teacher, needs_hed=needs_hed)
    train_files, val_files = stage2_files(cfg)
    files = [*train_files, *val_files]
    want = [_file_key(Path(f)) for f in files]
    path = cfg.teacher or cfg.output / "teacher.pt"
    if path.is_file():  # OUTPUT/teacher.pt of an earlier or interrupted run
        saved = _read_teacher(path, needs_hed=False)
        if saved.get("sources") == want and (saved["hed"] is not None or not needs_hed):
            return saved
    if not ctx.is_main:
        raise RuntimeError(
            "make the teacher file in one process first, then pass it with --teacher"
        )
    if needs_hed:
        from ..upsample.hed_walk import check_hed_available

        check_hed_available()
    explainer = Explainer(backbone, upsampler="guided", input_size=cfg.input_size).to(ctx.device)
    teacher = make_teacher(
        explainer, files, hed=needs_hed, show_progress=cfg.progress, batch_size=cfg.batch_size
    )
    teacher["sources"] = want
    teacher["split"] = {
        "train": [str(f) for f in train_files],
        "held_out": [str(f) for f in val_files],
    }
    atomic_torch_save(teacher, path)
    return teacher


class TeacherImages(Dataset):
    """``(picture uint8 (3, H, W), HED uint8 (h, w), CAM float16 (h, w))`` of rows of a teacher
    file (HED zeros when the file has none)."""

    def __init__(self, teacher: dict, rows: list[int]) -> None:
        self.teacher, self.rows = teacher, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        i = self.rows[index]
        t = self.teacher
        hed = (
            t["hed"][i]
            if t["hed"] is not None
            else torch.zeros_like(t["cam"][i], dtype=torch.uint8)
        )
        return t["images"][i], hed, t["cam"][i]


class _HeadForDDP(torch.nn.Module):
    def __init__(self, head: BoundaryHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, skips, features):
        return self.head.logits(skips, features)


def boundary_loss(
    backbone, head_module, batch, *, objective: str, ctx: DistContext, flip: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective's loss of one batch of :class:`TeacherImages` (mirrored at random when
    ``flip``), and its parts."""
    images, hed, cam = (t.to(ctx.device, non_blocking=True) for t in batch)
    pixels = images.float() / 255
    hed, cam = hed.float() / 255, cam.float()
    if flip:
        mirror = torch.rand(len(pixels), device=pixels.device) < 0.5
        pixels = torch.where(mirror[:, None, None, None], pixels.flip(-1), pixels)
        hed = torch.where(mirror[:, None, None], hed.flip(-1), hed)
        cam = torch.where(mirror[:, None, None], cam.flip(-1), cam)
    mean = torch.tensor(backbone.mean, device=pixels.device).view(1, -1, 1, 1)
    std = torch.tensor(backbone.std, device=pixels.device).view(1, -1, 1, 1)
    with torch.no_grad():
        features, skips = backbone.forward_features((pixels - mean) / std, return_skips=True)
    logits = head_module(skips, features)[:, 0].float()
    parts: dict[str, torch.Tensor] = {}
    loss = logits.new_zeros(())
    if "boundary-distill" in objective:
        parts["distill"] = F.binary_cross_entropy_with_logits(logits, hed)
        loss = loss + parts["distill"]
    if "affinity" in objective:
        parts["affinity"] = affinity_loss(torch.sigmoid(logits), cam)
        loss = loss + parts["affinity"]
    return loss, {k: v.detach() for k, v in parts.items()}


def train_boundaries(cfg: ExpansionConfig, ctx: DistContext, networks) -> dict[str, Any]:
    """Stage 2 with a boundary objective (the module doc); ``networks(cfg, payload, path)``
    gives the frozen classifier and the expansion network (new, ``--init-from`` or resumed)."""
    from .stage2_expansion import fit_stage2, state_hash

    cfg, resume_path, payload = start_run(cfg, ctx)
    backbone, expansion = networks(cfg, payload, resume_path)
    backbone.eval().requires_grad_(False)
    frozen_hash = state_hash(backbone)
    if expansion.boundary_head is None or expansion.boundary_head.width != cfg.boundary_width:
        if payload is not None:
            raise ValueError(f"{resume_path}: its expansion network has no boundary head to resume")
        expansion.add_boundary_head(cfg.boundary_width)
    head = expansion.boundary_head
    teacher = _teacher(cfg, backbone, ctx)
    index = {k[0]: i for i, k in enumerate(teacher["keys"])}
    split = teacher["split"]
    train_rows = [index[f] for f in split["train"] if f in index]
    val_rows = [index[f] for f in split["held_out"] if f in index]
    if ctx.is_main:
        atomic_save_json(split, cfg.output / "split.json")
    backbone.to(ctx.device)
    expansion.to(ctx.device).eval()
    head.train()
    plain = _HeadForDDP(head).to(ctx.device)
    module = wrap_ddp(plain, ctx)
    sampler, loader, val_loader = make_loaders(
        TeacherImages(teacher, train_rows), TeacherImages(teacher, val_rows), cfg=cfg, ctx=ctx
    )
    optimizer, scheduler, state = setup_optimization(
        cfg,
        list(head.parameters()),
        loader=loader,
        payload=payload,
        resume_path=resume_path,
        ctx=ctx,
    )

    def train_step(batch) -> torch.Tensor:
        loss, _ = boundary_loss(
            backbone, module, batch, objective=cfg.objective, ctx=ctx, flip=cfg.augment == "flip"
        )
        return loss

    @torch.no_grad()
    def run_eval() -> dict[str, float]:
        head.eval()
        sums = np.zeros(3)  # loss, distill, images
        for batch, _ in val_loader:  # (batch, unreadable): every teacher row is readable
            loss, parts = boundary_loss(
                backbone, plain, batch, objective=cfg.objective, ctx=ctx, flip=False
            )
            n = len(batch[0])
            sums += [float(loss) * n, float(parts.get("distill", torch.zeros(()))) * n, n]
        sums = ctx.all_reduce_sum(sums)
        head.train()
        n = max(1.0, sums[2])
        return {"val_boundary_loss": float(sums[0] / n), "val_distill_bce": float(sums[1] / n),
                "val_images": int(sums[2])}  # fmt: skip

    return fit_stage2(
        cfg,
        ctx,
        backbone=backbone,
        expansion=expansion,
        frozen_hash=frozen_hash,
        loader=loader,
        sampler=sampler,
        optimizer=optimizer,
        scheduler=scheduler,
        state=state,
        train_step=train_step,
        run_eval=run_eval,
        best_key="val_boundary_loss",
        desc="boundaries",
        what="boundary loss",
    )
