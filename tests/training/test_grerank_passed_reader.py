"""A reader passed to train_grerank must have the config's variant and doc_tokens (what
train_config.json and the checkpoints record): refused before anything is written otherwise."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rerankers"))
from _gumbel_helpers import FakeReader, example, grerank_config, tiny_scorer

from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training.grerank import train_grerank

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = [example(i) for i in range(2)]


class LayoutReader(FakeReader):
    """FakeReader with the layout settings of a CausalLMReader."""

    def __init__(self, variant: str, doc_tokens: int) -> None:
        super().__init__()
        self.variant, self.doc_tokens = variant, doc_tokens


@pytest.mark.parametrize(
    ("reader_settings", "message"),
    [
        (("concatenated", 48), r"variant \(reader 'concatenated', cfg 'independent'\)"),
        (("independent", 4), r"doc_tokens \(reader 4, cfg 48\)"),
        (("concatenated", 4), r"variant \(reader 'concatenated', cfg 'independent'\), doc_tokens \(reader 4, cfg 48\)"),
    ],
)
def test_a_mismatched_reader_is_refused_before_anything_is_written(
    minilm_path: str, tmp_path: Path, reader_settings: tuple[str, int], message: str
) -> None:
    out = tmp_path / "run"
    r = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu")
    with pytest.raises(ValueError, match=message):
        train_grerank(grerank_config(out, k=1, max_steps=1), examples=EXAMPLES, reranker=r,
                      reader=LayoutReader(*reader_settings))
    assert not out.exists()


def test_a_matching_reader_trains_and_is_recorded(minilm_path: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu")
    cfg = grerank_config(out, k=1, variant="concatenated", doc_tokens=4)
    res = train_grerank(cfg, examples=EXAMPLES, reranker=r, reader=LayoutReader("concatenated", 4))
    assert len(res.history["loss"]) == 2 and all(v is not None for v in res.history["loss"])
    recorded = json.loads((out / "train_config.json").read_text())
    assert (recorded["variant"], recorded["doc_tokens"]) == ("concatenated", 4)
    assert (res.model_dir / "config.json").is_file()


def test_labels_supervision_does_not_check_the_unused_reader(minilm_path: str, tmp_path: Path) -> None:
    r = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu")
    res = train_grerank(grerank_config(tmp_path / "run", k=1, max_steps=1, supervision="labels"),
                        examples=EXAMPLES, reranker=r, reader=LayoutReader("concatenated", 4))
    assert len(res.history["loss"]) == 1
