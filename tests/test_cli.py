"""The ``hrcam`` command: fast help, one module per command, exit statuses."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from hrcam.cli import COMMANDS, get_parser, main


def test_help_and_version_import_no_torch():
    code = (
        "import sys, contextlib, io\n"
        "from hrcam.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "    try: main(['--version'])\n"
        "    except SystemExit: pass\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_commands_help_imports_neither_torch_nor_numba(command):
    code = (
        "import sys, contextlib, io\n"
        "from hrcam.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try: main([{command!r}, '--help'])\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'numba', 'cv2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_help_texts_torch_free_lists_are_the_libraries():
    from hrcam import viz
    from hrcam.commands.evaluate_command import METHOD_NAMES
    from hrcam.explain.settings import DEFAULT_CMAP
    from hrcam.methods import list_methods

    assert METHOD_NAMES == tuple(list_methods())
    assert DEFAULT_CMAP == viz.DEFAULT_CMAP


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_listed_command_is_registered_by_its_module(command):
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(COMMANDS[command][0], "hrcam").register(sub)
    assert command in sub.choices
    assert command in get_parser(command)._subparsers._group_actions[0].choices


def test_no_command_prints_the_list_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_the_package_exports_exactly_what_it_lists():
    import hrcam

    assert set(hrcam.__all__) == {*hrcam._EXPORTS, "__version__"}
    for name in hrcam.__all__:
        assert getattr(hrcam, name) is not None


def test_app_flags_are_checked_before_anything_loads(capsys):
    with pytest.raises(SystemExit) as info:
        main(["app", "--port", "70000"])
    assert info.value.code == 2
    assert "port must lie in [0, 65535]" in capsys.readouterr().err
    assert main(["app", "--host", "my laptop"]) == 2
    assert "--host must be an IP address or localhost, got 'my laptop'" in capsys.readouterr().err


def test_a_taken_port_is_one_line_naming_port_before_the_model_loads(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["app", "--port", str(port), "--model", "no-such-model.pt"]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: 127.0.0.1:{port} is taken" in err and "Traceback" not in err
    assert "no-such-model" not in err  # the model was never looked at


def test_a_missing_gradio_is_one_line_with_the_install_command(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["app", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install -c constraints.txt -e" in err


def test_cpu_threads_takes_the_flag_then_omp_num_threads_then_every_core(monkeypatch):
    import os

    from hrcam.utils import cpu_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads(3) == 3
    assert cpu_threads() == 1  # what torchrun sets for each of several processes
    for unusable in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert cpu_threads() == max(1, os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() == max(1, os.cpu_count() or 1)


@pytest.mark.parametrize("command", ["explain", "app"])
def test_the_explaining_commands_give_torch_the_threads_they_are_told(command, monkeypatch, capsys):
    import torch

    from hrcam.commands.model_args import load_from_args

    before = torch.get_num_threads()
    parser = get_parser(command)
    args = parser.parse_args([command, "--threads", "1", "--model", "no-such-model.pt"])
    assert args.threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    try:
        torch.set_num_threads(2)
        with pytest.raises(Exception, match="no-such-model"):
            load_from_args(args)  # threads are set before the model is looked for
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        parser.parse_args([command, "--threads", "0"])
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith("argument --threads: expected a positive integer, got 0")
