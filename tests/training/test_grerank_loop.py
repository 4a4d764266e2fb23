"""G-Rerank training loop: gradient routing, learning from a reader signal, checkpoints and resume."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rerankers"))

from _gumbel_helpers import FakeReader, example, grerank_config, tiny_scorer

from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training.grerank import GRerankConfig, example_loss, train_grerank
from rag_relax_plugins.training.grerank_eval import evaluate_rankings, hotpot_split

EXAMPLES = [example(i) for i in range(6)]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: several times faster on a shared, oversubscribed CPU; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(minilm_path: str, seed: int = 0) -> GumbelReranker:
    return GumbelReranker(tiny_scorer(minilm_path, seed=seed), k=1, device="cpu", tau=0.5)


def cfg(tmp: Path, **kw: object) -> GRerankConfig:
    config: GRerankConfig = grerank_config(tmp, **kw)
    return config


def test_reader_loss_reaches_reranker_not_reader(minilm_path: str) -> None:
    r, reader = make(minilm_path), FakeReader()
    loss = example_loss(r, EXAMPLES[0], reader=reader, generator=torch.Generator().manual_seed(0))
    assert loss is not None
    loss.backward()
    grads = [p.grad for p in r.parameters()]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    assert reader.frozen.grad is None


def test_reader_signal_raises_gold_scores(minilm_path: str, tmp_path: Path) -> None:
    """With a reader that prefers paragraph 0, training moves it up the ranking."""
    r = make(minilm_path)

    def margin() -> float:  # gold score minus the mean of the others, averaged over questions
        s = torch.stack([r.score(e.question, e.paragraph_texts()) for e in EXAMPLES])
        return float((s[:, 0] - s[:, 1:].mean(dim=1)).mean())

    before = margin()
    train_grerank(cfg(tmp_path, epochs=2), examples=EXAMPLES, reranker=r, reader=FakeReader())
    assert margin() > before + 0.1
    assert (tmp_path / "curves.png").is_file() and (
        tmp_path / "final_model" / "config.json"
    ).is_file()
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist["loss"]) == 12


def test_resume_reproduces_an_uninterrupted_run(minilm_path: str, tmp_path: Path) -> None:
    full = make(minilm_path)
    train_grerank(cfg(tmp_path / "a"), examples=EXAMPLES, reranker=full, reader=FakeReader())
    part = make(minilm_path)
    train_grerank(
        cfg(tmp_path / "b", max_steps=2), examples=EXAMPLES, reranker=part, reader=FakeReader()
    )
    ckpt = tmp_path / "b" / "checkpoint_step_2"
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "rng.safetensors").is_file()
    res = train_grerank(
        cfg(tmp_path / "b", resume_from=str(ckpt)), examples=EXAMPLES, reader=FakeReader()
    )
    resumed = GumbelReranker.from_pretrained(res.model_dir)
    q, docs = EXAMPLES[0].question, EXAMPLES[0].paragraph_texts()
    assert torch.allclose(resumed.score(q, docs), full.score(q, docs), atol=1e-5)
    assert len(res.history["loss"]) == 6


def test_supervised_reference_uses_labels(minilm_path: str, tmp_path: Path) -> None:
    r = make(minilm_path)
    res = train_grerank(
        cfg(tmp_path, supervision="labels", epochs=3), examples=EXAMPLES, reranker=r
    )
    assert res.history["loss"][-1] < res.history["loss"][0]


def test_examples_without_paragraphs_are_skipped(minilm_path: str) -> None:
    from dataclasses import replace

    empty = replace(EXAMPLES[0], paragraphs=())
    assert example_loss(make(minilm_path), empty, reader=FakeReader()) is None
    assert example_loss(make(minilm_path), replace(EXAMPLES[0], supporting_facts=())) is None


@pytest.mark.parametrize(
    "kw",
    [
        {"supervision": "answers"},
        {"epochs": 0},
        {"tau": 0.0},
        {"max_steps": 0},
        {"grad_accum_steps": True},
        {"cache_reader_states": True, "variant": "concatenated"},
    ],
)
def test_config_validation(kw: dict) -> None:
    with pytest.raises(ValueError):
        GRerankConfig(**kw)


def test_config_round_trip() -> None:
    c = GRerankConfig(epochs=2, variant="concatenated")
    assert GRerankConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown"):
        GRerankConfig.from_dict({"epoch": 1})


def test_evaluate_rankings_per_type() -> None:
    res = evaluate_rankings(EXAMPLES[:2], [[0, 1, 2, 3], [1, 2, 3, 0]])
    assert res["all"]["recall@2"] == 0.5 and res["all"]["n"] == 2
    assert res["comparison"]["mrr"] == 1.0 and res["bridge"]["mrr"] == 0.25
    with pytest.raises(ValueError):
        evaluate_rankings(EXAMPLES[:2], [[0]])


def test_hotpot_split_is_fixed() -> None:
    train, test = hotpot_split(EXAMPLES, 4)
    assert [e.id for e in train] == ["x0", "x1", "x2", "x3"] and [e.id for e in test] == [
        "x4",
        "x5",
    ]
    with pytest.raises(ValueError):
        hotpot_split(EXAMPLES, 6)


def test_cli_command_is_registered() -> None:
    from rag_relax_plugins.cli import build_parser

    args = build_parser().parse_args(
        ["train-reranker", "-o", "x", "--max-steps", "3", "--variant", "concatenated"]
    )
    assert (
        args.command == "train-reranker" and args.max_steps == 3 and args.variant == "concatenated"
    )
