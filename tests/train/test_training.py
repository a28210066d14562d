"""Both training stages end to end on tiny data: checkpoints, resume, determinism, frozen classifier, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hrcam import load_model
from hrcam.checkpoint import load_checkpoint
from hrcam.cli import main as cli
from hrcam.train import classifier, expansion
from hrcam.train.expansion import state_hash

TINY = [
    "--input-size",
    "32",
    "--workers",
    "0",
    "--no-progress",
    "--block-config",
    "1,1,1",
    "--growth-rate",
    "8",
]


def _stage1(data: Path, out: Path, *extra: str) -> int:
    return cli(["train-classifier", str(data), "-o", str(out), "--batch-size", "4", *TINY, *extra])


def _stage2(data: Path, classifier_ckpt: Path, out: Path, *extra: str) -> int:
    return cli(
        [
            "train-expansion",
            str(data),
            "--classifier",
            str(classifier_ckpt),
            "-o",
            str(out),
            "--batch-size",
            "4",
            "--input-size",
            "32",
            "--workers",
            "0",
            "--no-progress",
            "--val-fraction",
            "0.25",
            *extra,
        ]
    )


def _weights(path: Path, key: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[key]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    from tests.conftest import make_class_folders

    root = tmp_path_factory.mktemp("stage1")
    data = make_class_folders(root / "data")
    assert _stage1(data, root / "run", "--epochs", "2", "--lr", "3e-3") == 0
    return data, root / "run"


def test_stage1_outputs_metrics_and_class_names(stage1_run):
    data, run = stage1_run
    assert {"best.pt", "last.pt", "metrics.jsonl", "config.json"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in (
        "test_accuracy",
        "test_top5_accuracy",
        "test_macro_precision",
        "test_macro_recall",
        "test_macro_f1",
        "test_micro_f1",
        "train_loss",
    ):
        assert key in records[-1]
    assert records[-1]["test_num_samples"] == 8
    model = load_model(run / "best.pt")
    assert model.class_names == ["disc", "square"]
    payload = load_checkpoint(run / "last.pt")
    assert (
        payload["epoch"] == 2 and payload["stage"] == "classifier" and "optimizer_state" in payload
    )
    assert payload["config"]["lr"] == 3e-3


def test_stage1_is_deterministic_and_resumes_exactly(stage1_run, tmp_path):
    data, run = stage1_run
    # Same seed → bit-identical weights.
    assert _stage1(data, tmp_path / "again", "--epochs", "2", "--lr", "3e-3") == 0
    _assert_same(
        _weights(run / "last.pt", "backbone_state"),
        _weights(tmp_path / "again" / "last.pt", "backbone_state"),
    )
    # Killed after epoch 1 (4 steps), resumed: the same weights as the uninterrupted run.
    assert (
        _stage1(data, tmp_path / "cut", "--epochs", "2", "--lr", "3e-3", "--stop-after-steps", "4")
        == 0
    )
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    assert _stage1(data, tmp_path / "cut", "--epochs", "2", "--lr", "3e-3", "--resume") == 0
    _assert_same(
        _weights(run / "last.pt", "backbone_state"),
        _weights(tmp_path / "cut" / "last.pt", "backbone_state"),
    )


def test_stage1_resumes_mid_epoch(stage1_run, tmp_path):
    data, _ = stage1_run
    args = ["--epochs", "2", "--augment", "none", "--checkpoint-every", "1"]
    assert _stage1(data, tmp_path / "full", *args) == 0
    assert _stage1(data, tmp_path / "cut", *args, "--stop-after-steps", "6") == 0
    loop = load_checkpoint(tmp_path / "cut" / "last.pt")["loop"]
    assert (loop["epoch"], loop["step_in_epoch"]) == (1, 2)
    assert _stage1(data, tmp_path / "cut", *args, "--resume") == 0
    _assert_same(
        _weights(tmp_path / "full" / "last.pt", "backbone_state"),
        _weights(tmp_path / "cut" / "last.pt", "backbone_state"),
    )


def test_stage2_leaves_classifier_bit_identical(stage1_run, tmp_path):
    data, run = stage1_run
    before = load_model(run / "best.pt")
    assert (
        _stage2(
            data / "train",
            run / "best.pt",
            tmp_path / "s2",
            "--epochs",
            "2",
            "--consistency-weight",
            "0.5",
        )
        == 0
    )
    after = load_model(tmp_path / "s2" / "best.pt")
    assert state_hash(before.backbone) == state_hash(after.backbone)
    _assert_same(before.backbone.state_dict(), after.backbone.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(after(x), before.backbone(x))  # full model predicts as the half model
    cams = after.generate_cams(x)
    high = cams.high_res
    assert high.shape == (4, 32, 32)
    records = [
        json.loads(line) for line in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()
    ]
    assert {"val_mse", "val_psnr", "val_consistency_rel_error", "train_loss"} <= records[-1].keys()
    split = json.loads((tmp_path / "s2" / "split.json").read_text())
    assert len(split["held_out"]) == 4 and not set(split["held_out"]) & set(split["train"])


def test_stage2_resume_and_flat_folder(stage1_run, tmp_path):
    data, run = stage1_run
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted((data / "train").rglob("*.png"))):
        (flat / f"{i}.png").write_bytes(f.read_bytes())
    assert _stage2(flat, run / "best.pt", tmp_path / "full", "--epochs", "2") == 0
    assert (
        _stage2(flat, run / "best.pt", tmp_path / "cut", "--epochs", "2", "--stop-after-steps", "3")
        == 0
    )
    assert _stage2(flat, run / "best.pt", tmp_path / "cut", "--epochs", "2", "--resume") == 0
    _assert_same(
        _weights(tmp_path / "full" / "last.pt", "expansion_state"),
        _weights(tmp_path / "cut" / "last.pt", "expansion_state"),
    )


def test_clear_errors_for_bad_data(tmp_path, stage1_run):
    _, run = stage1_run
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "a").mkdir(parents=True)
    args = classifier.get_args_parser().parse_args(
        [str(tmp_path / "empty"), "-o", str(tmp_path / "o"), *TINY]
    )
    with pytest.raises(ValueError, match="hold no images"):
        classifier.main(args)
    args = classifier.get_args_parser().parse_args(
        [str(tmp_path / "nothing"), "-o", str(tmp_path / "o"), *TINY]
    )
    with pytest.raises(FileNotFoundError, match="DATA/train"):
        classifier.main(args)
    (tmp_path / "noimg").mkdir()
    args = expansion.get_args_parser().parse_args(
        [str(tmp_path / "noimg"), "--classifier", str(run / "best.pt"), "-o", str(tmp_path / "o2")]
    )
    with pytest.raises(ValueError, match="no images found"):
        expansion.main(args)
    # The CLI turns these into one line on stderr and exit status 2.
    assert cli(["train-classifier", str(tmp_path / "nothing"), "-o", str(tmp_path / "o3")]) == 2


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "hrcam",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_both_stages_under_torchrun_with_two_cpu_processes(stage1_run, tmp_path):
    data, _ = stage1_run
    result = _torchrun(
        "train-classifier",
        str(data),
        "-o",
        str(tmp_path / "ddp1"),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [
        json.loads(line) for line in (tmp_path / "ddp1" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(records) == 1  # written once, by rank 0
    assert (
        records[0]["test_num_samples"] == 8
    )  # each test image scored exactly once across processes
    result = _torchrun(
        "train-expansion",
        str(data / "train"),
        "--classifier",
        str(tmp_path / "ddp1" / "last.pt"),
        "-o",
        str(tmp_path / "ddp2"),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--input-size",
        "32",
        "--workers",
        "0",
        "--no-progress",
        "--val-fraction",
        "0.25",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    before = load_model(tmp_path / "ddp1" / "last.pt").backbone
    after = load_model(tmp_path / "ddp2" / "last.pt")
    _assert_same(before.state_dict(), after.backbone.state_dict())
    assert after.expansion is not None
