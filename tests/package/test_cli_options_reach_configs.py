"""Each trainer command hands every option it parses to its config, by name, unchanged (review
2026-12-05: an option silently replaced by a constant, e.g. --margin or --seed, passed every CLI test)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import pytest


class _Stop(Exception):
    pass


def _captured(monkeypatch: pytest.MonkeyPatch, cli: str, module: str, cls: str,
              argv: list[str]) -> tuple[dict[str, Any], argparse.Namespace]:
    seen: dict[str, Any] = {}

    def record(**kw: Any) -> None:
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(importlib.import_module(module), cls, record)
    mod = importlib.import_module(f"rag_relax_plugins._cli.{cli}")
    parser = argparse.ArgumentParser()
    mod.add_arguments(parser)
    args = parser.parse_args(argv)
    with pytest.raises(_Stop):
        mod.run(args)
    return seen, args


def _changed_numbers(cli: str, skip: set[str]) -> list[str]:
    """``--flag value`` for every int/float option of ``cli`` with a default: default + 1 (ints),
    x 0.5 (floats; 0.25 for a default of 0, which x 0.5 kept), and for an option with choices the
    first choice other than its default (a default of None included)."""
    parser = argparse.ArgumentParser()
    importlib.import_module(f"rag_relax_plugins._cli.{cli}").add_arguments(parser)
    argv: list[str] = []
    for a in parser._actions:
        if a.dest in skip or not a.option_strings:
            continue
        if a.choices is not None and not isinstance(a.default, bool):
            other = [c for c in a.choices if c != a.default]
            if other:
                argv += [a.option_strings[0], str(other[0])]
        elif a.type in (int, float) and a.default is not None:
            argv += [a.option_strings[0], str(a.default + 1 if a.type is int else (a.default * 0.5 or 0.25))]
    return argv


def _chosen(args: argparse.Namespace, cli: str, skip: set[str]) -> list[str]:
    """The options of ``cli`` with choices that :func:`_changed_numbers` set."""
    parser = argparse.ArgumentParser()
    importlib.import_module(f"rag_relax_plugins._cli.{cli}").add_arguments(parser)
    return [a.dest for a in parser._actions if a.choices is not None and a.option_strings and a.dest not in skip
            and len([c for c in a.choices if c != a.default]) > 0 and not isinstance(a.default, bool)]


def _numbers(args: argparse.Namespace) -> list[str]:
    return [a for a, v in vars(args).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _check_same_names(seen: dict[str, Any], args: argparse.Namespace, names: list[str]) -> None:
    for name in names:
        assert seen[name] == getattr(args, name), name


def test_train_passes_every_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv = ["--train-file", "t.jsonl", "--output", str(tmp_path / "o"), "--no-checkpoints",
            *_changed_numbers("train", set())]
    seen, args = _captured(monkeypatch, "train", "rag_relax_plugins.training.gaussian_train", "TrainConfig", argv)
    numbers = _numbers(args)
    assert {"margin", "lambda_reg"} <= set(numbers)
    assert {"loss", "geometry", "isotropy"} <= set(_chosen(args, "train", set()))
    _check_same_names(seen, args, numbers + _chosen(args, "train", set()))
    assert seen["save_checkpoints"] is False


def test_train_maxsim_passes_every_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv = ["--output", str(tmp_path / "o"), *_changed_numbers("train_maxsim", {"projection_dim"})]
    seen, args = _captured(monkeypatch, "train_maxsim", "rag_relax_plugins.training.maxsim_train",
                           "MaxSimTrainConfig", argv)
    numbers = [a for a in _numbers(args) if a != "projection_dim"]
    assert "hard_negatives" in numbers
    _check_same_names(seen, args, numbers + _chosen(args, "train_maxsim", {"projection_dim"}))


def test_train_maxsim_projection_dim_0_means_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen, _ = _captured(monkeypatch, "train_maxsim", "rag_relax_plugins.training.maxsim_train", "MaxSimTrainConfig",
                        ["--output", str(tmp_path / "o"), "--projection-dim", "0", "--train-last-layers", "1"])
    assert seen["projection_dim"] is None  # "0: no projection" (--help)


def test_train_reranker_passes_every_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv = ["--output", str(tmp_path / "o"), *_changed_numbers("train_reranker", set())]
    seen, args = _captured(monkeypatch, "train_reranker", "rag_relax_plugins.training.grerank", "GRerankConfig", argv)
    numbers = _numbers(args)  # an option not handed over is a KeyError, not skipped
    assert {"seed", "weight_decay"} <= set(numbers)
    _check_same_names(seen, args, numbers + _chosen(args, "train_reranker", set()))


def test_train_mol_passes_the_training_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv = ["--dataset", "movielens", "--output", str(tmp_path / "o"), "--weight-decay", "0.25", "--warmup-steps", "3",
            "--keep-checkpoints", "5", "--save-every-steps", "7", "--max-steps", "9", "--seed", "4"]
    seen, args = _captured(monkeypatch, "train_mol", "rag_relax_plugins.training.mol_train", "MoLTrainConfig", argv)
    _check_same_names(seen, args, ["weight_decay", "warmup_steps", "keep_checkpoints", "save_every_steps",
                                   "max_steps", "seed"])
