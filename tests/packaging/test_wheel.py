"""The wheel ``pip wheel .`` builds installs and runs offline, from the wheel, not this tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_built_wheel_runs_the_default_model_from_its_own_files(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("hrcam-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(target))
    code = (
        "import hrcam, sys\n"
        "from skimage import data\n"
        "print(hrcam.__file__)\n"
        "e = hrcam.load_model('default').explain(data.chelsea())\n"
        "print(e.target(0).name, tuple(e.refined.shape))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    location, answer = out.stdout.strip().splitlines()
    assert location.startswith(str(target))  # the installed wheel, not the source tree
    assert answer == "Egyptian cat (1, 224, 224)"
    help_text = subprocess.run(
        [sys.executable, "-m", "hrcam", "explain", "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "usage: hrcam explain" in help_text
