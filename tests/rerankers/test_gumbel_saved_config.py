"""A saved Gumbel reranker's config.json lacking a field or holding a bad value: a ValueError naming
the file (a KeyError before), which ``rag-relax train-reranker --init-from`` prints as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _gumbel_helpers import tiny_scorer, write_hotpot

from rag_relax_plugins.rerankers.gumbel import GumbelReranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def saved(minilm_path: str, tmp_path: Path) -> Path:
    return GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu").save_pretrained(tmp_path / "init")


def _edit(folder: Path, **changes: object) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    for name, value in changes.items():
        if value is None:
            del cfg[name]
        else:
            cfg[name] = value
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("field", ["k", "mode", "tau", "kappa", "batch_size"])
def test_a_missing_field_is_a_value_error_naming_the_file(saved: Path, field: str) -> None:
    _edit(saved, **{field: None})
    with pytest.raises(ValueError, match=rf"config\.json lacks '{field}'"):
        GumbelReranker.from_pretrained(saved, device="cpu")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"k": 0}, "k must be >= 1"),
        ({"k": "2"}, "k must be an int"),
        ({"mode": "topk"}, "mode must be 'l2x' or 'subset'"),
        ({"tau": -1.0}, "tau must be a finite number > 0"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ],
)
def test_a_bad_value_is_a_value_error_naming_the_file(saved: Path, changes: dict, message: str) -> None:
    _edit(saved, **changes)
    with pytest.raises(ValueError, match=rf"config\.json: {message}"):
        GumbelReranker.from_pretrained(saved, device="cpu")


def test_cli_init_from_a_config_without_k_exits_2_with_one_line(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rag_relax_plugins.cli import main

    _edit(saved, k=None)
    out = tmp_path / "run"
    argv = ["train-reranker", "-o", str(out), "--data", str(write_hotpot(tmp_path / "d.jsonl")), "--train-size",
            "1", "--supervision", "labels", "--init-from", str(saved), "--k", "1", "--device", "cpu",
            "--no-progress"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rag-relax")]
    assert len(err) == 1 and err[0].startswith("rag-relax train-reranker: error: ")
    assert "config.json lacks 'k'" in err[0]
    assert not out.exists()
