"""The GPU throughput script runs (here on the CPU, small) and prints every row it promises:
it is run when a GPU machine is lent, so it must not have rotted by then."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_throughput.py"


@pytest.mark.slow
def test_the_throughput_script_prints_every_row(tmp_path):
    out = tmp_path / "rows.json"
    args = [
        *("--device", "cpu", "--models", "default", "--size", "64", "--threads", "2"),
        *("--train-batch", "2", "--explain-batch", "4", "--faithfulness-batch", "1"),
        *("--steps", "1", "--warmup", "0", "--precision", "bf16", "--channels-last"),
        *("--json", str(out)),
    ]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    work = [r["what"] for r in rows]
    assert work == [
        "stage-2 training step",
        "forward pass (Explainer.logits)",
        "Explainer.cams (guided)",
        "refine_batch (hrcam preset)",
        "Explainer.cams (guided) + refine_batch",
        "Explainer.cams (paper)",
        "Explainer.cams (paper) + refine_batch",
        "faithfulness metrics (deletion/insertion, drop, ROAD, ADCC)",
    ]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "| efficientnet_lite0 (shipped) | forward pass" in done.stdout


@pytest.mark.slow
def test_the_volume_benchmark_prints_its_rows():
    script = SCRIPT.with_name("bench_volumes.py")
    done = subprocess.run(
        [sys.executable, str(script), "--repeats", "1", "--threads", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "³" in line]
    assert [r.split("|")[1].strip() for r in rows] == [
        "MONAI DenseNet121 3-D",
        "hrcam tiny_densenet 3-D",
    ]
    for row in rows:  # forward ms, then cams and explain as ms (ratio)
        ratios = [float(cell.split("(")[1].rstrip(") ")) for cell in row.split("|")[4:6]]
        assert all(r > 0 for r in ratios)
