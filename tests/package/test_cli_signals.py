"""Ctrl-C and SIGTERM end a command with one line and the shell's exit status (130 / 143), and a
save in progress leaves no temporary folder: Ctrl-C printed a raw traceback (exit 1), and SIGTERM
(timeout, kill, a scheduler) ended the process at once, leaving ``.<name>.tmp-*`` behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from rag_relax_plugins import cli
from rag_relax_plugins._io import atomic_folder


def _patched_run(monkeypatch: pytest.MonkeyPatch, run) -> None:  # type: ignore[no-untyped-def]
    parser = cli.build_parser

    def build() -> object:
        p = parser()
        for action in p._subparsers._group_actions:  # type: ignore[union-attr]
            action.choices["prepare-data"].set_defaults(_run=run)
        return p

    monkeypatch.setattr(cli, "build_parser", build)


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    def run(args: object) -> int:
        raise KeyboardInterrupt

    _patched_run(monkeypatch, run)
    assert cli.main(["prepare-data", str(tmp_path / "docs.txt"), "--output", str(tmp_path / "d")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("rag-relax prepare-data: interrupted;") and "Traceback" not in err


def test_sigterm_mid_save_unwinds_and_removes_the_temporary_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "out" / "model"

    def write(tmp: Path) -> None:
        (tmp / "weights.bin").write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGTERM)  # as `timeout` or `kill` would, in the middle of a save
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not delivered")

    def run(args: object) -> int:
        atomic_folder(target, write)
        return 0

    _patched_run(monkeypatch, run)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["prepare-data", str(tmp_path / "docs.txt"), "--output", str(tmp_path / "d")]) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []  # no .model.tmp-* left
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the caller's again


@pytest.mark.parametrize("device", ["meta", "xpu", "cpu:0"])
def test_resolve_device_refuses_device_types_it_cannot_run_on(device: str) -> None:
    from rag_relax_plugins.core.device import resolve_device

    if device == "cpu:0":
        assert resolve_device(device) == torch.device("cpu:0")
        return
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N', 'mps' or None"):
        resolve_device(device)


def test_every_command_that_loads_a_model_takes_no_progress() -> None:
    """evaluate drew transformers' "Loading weights" bar with no option to turn it off."""
    parser = cli.build_parser()
    sub = next(a for a in parser._subparsers._group_actions).choices  # type: ignore[union-attr]
    takes = {name for name, p in sub.items() if any("--no-progress" in a.option_strings for a in p._actions)}
    assert takes >= {"demo", "evaluate", "train", "train-maxsim", "train-mol", "train-reranker"}
