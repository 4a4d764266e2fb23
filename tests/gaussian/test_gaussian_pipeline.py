"""Gaussian embedder pipeline on the hashing backbone: data prep, training, resume, CLI, errors."""

from __future__ import annotations

import json

import pytest
import torch

from rag_relax_plugins.cli import main
from rag_relax_plugins.embedders.gaussian import GaussianEmbedder, geometry_scores
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.embedders.gaussian_retriever import GaussianRetriever
from rag_relax_plugins.training.gaussian_data import (
    load_pairs,
    prepare_data,
    split_pairs,
    synthesize_pairs,
)
from rag_relax_plugins.training.gaussian_eval import evaluate_model, format_table
from rag_relax_plugins.training.gaussian_train import TrainConfig, train

DOCS = [
    "Cats are small felines. They purr when content and hunt mice at night.",
    "Dogs are loyal companions. They bark at strangers and love long walks.",
    "The stock market fell sharply. Investors worried about interest rates.",
    "Rain is expected tomorrow. Forecasters warn of flooding in the valley.",
    "Python is a programming language. It is popular for data science work.",
    "The Eiffel Tower is in Paris. Millions of tourists visit it every year.",
    "Bees make honey from nectar. Their colonies are led by a single queen.",
    "Volcanoes erupt molten rock. Lava flows can destroy nearby villages.",
    "Chess is a strategy board game. Grandmasters study openings for years.",
    "Coffee comes from roasted beans. Many people drink it every morning.",
]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [p.to_dict() for p in synthesize_pairs(DOCS * 2, negatives=True, seed=0)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def _cfg(tmp_path, train_file, **kw) -> TrainConfig:
    base = dict(train_file=str(train_file), output_dir=str(tmp_path / "run"), backbone="hashing:64", output_dim=16,
                batch_size=4, learning_rate=1e-3, head_learning_rate=1e-2, num_slices=16, seed=3, show_progress=False,
                device="cpu", lambda_isotropy=0.05, dropout=0.1)
    base.update(kw)
    return TrainConfig(**base)


def test_two_step_smoke_training(tmp_path, pairs_file) -> None:
    out = train(_cfg(tmp_path, pairs_file, max_steps=2, val_file=str(pairs_file)))
    run = tmp_path / "run"
    assert out["steps"] == 2 and len(out["history"]["step_loss"]) == 2
    for name in ("final_model", "best_model", "checkpoint_epoch_1", "train_config.json", "training.log", "loss_curves.png"):
        assert (run / name).exists(), name
    assert (run / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "step 2" in (run / "training.log").read_text()
    model = GaussianEmbedder.load(run / "final_model", device="cpu")
    assert model.encode(["a question"]).shape == (1, 16)


def test_resume_matches_uninterrupted(tmp_path, pairs_file) -> None:
    full = train(_cfg(tmp_path / "a", pairs_file, epochs=2, warmup_steps=2, grad_accum_steps=2))
    train(_cfg(tmp_path / "b", pairs_file, epochs=2, warmup_steps=2, grad_accum_steps=2))
    # simulate a crash after the first epoch: drop everything written later, then resume
    import shutil

    for name in ("checkpoint_epoch_2", "final_model", "best_model"):
        shutil.rmtree(tmp_path / "b" / "run" / name, ignore_errors=True)
    ck = tmp_path / "b" / "run" / "checkpoint_epoch_1"
    resumed = train(_cfg(tmp_path / "b", pairs_file, epochs=2, warmup_steps=2, grad_accum_steps=2, resume_from=str(ck)))
    assert resumed["steps"] == full["steps"]
    assert resumed["history"]["step_loss"] == pytest.approx(full["history"]["step_loss"], rel=1e-5)
    a = GaussianEmbedder.load(tmp_path / "a" / "run" / "final_model", device="cpu").encode(["x y"])
    b = GaussianEmbedder.load(tmp_path / "b" / "run" / "final_model", device="cpu").encode(["x y"])
    assert torch.allclose(a, b, atol=1e-5)


def test_training_reduces_loss_and_fine_tune(tmp_path, pairs_file) -> None:
    out = train(_cfg(tmp_path, pairs_file, epochs=6, save_checkpoints=False, isotropy="covariance", loss="triplet"))
    assert out["history"]["train_loss"][-1] < out["history"]["train_loss"][0]
    ft = train(_cfg(tmp_path / "ft", pairs_file, epochs=1, init_model=str(tmp_path / "run" / "final_model"), save_checkpoints=False))
    assert ft["steps"] > 0


def test_prepare_data_documents_and_csv(tmp_path) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("\n\n".join(DOCS), encoding="utf-8")
    paths = prepare_data(docs, tmp_path / "out", negatives=True)
    n = [len(load_pairs(paths[k])) for k in ("train", "val", "test")]
    assert n == [8, 1, 1]
    ev = json.loads(paths["eval"].read_text())
    assert len(ev["queries"]) == 1 and len(ev["corpus"]) >= 10
    csv = tmp_path / "p.csv"
    csv.write_text("query,positive,negative\n" + "\n".join(f"q{i},doc {i},other {i}" for i in range(10)), encoding="utf-8")
    paths = prepare_data(csv, tmp_path / "out2", fractions=(0.6, 0.2, 0.2))
    assert len(load_pairs(paths["train"])) == 6
    assert load_pairs(paths["train"])[0].negative is not None


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.csv", "", "empty"),
        ("bad.csv", "query,positive\nq1,d1\nq2\n", r"bad.csv:3"),
        ("head.csv", "question,answer\nq,d\n", r"head.csv:1"),
        ("bad.jsonl", '{"query": "q", "positive": "d"}\n{"query": "q"\n', r"bad.jsonl:2"),
        ("miss.jsonl", '{"query": "q", "positive": "d"}\n\n{"query": "q", "positive": ""}\n', r"miss.jsonl:3"),
        ("bad.json", '[{"query": "q", "positive": "d"}, 3]', "item 1"),
    ],
)
def test_bad_files_report_line(tmp_path, name, content, match) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_pairs(path)


def test_bad_config_and_missing_checkpoint(tmp_path, pairs_file) -> None:
    with pytest.raises(ValueError, match="output_dim"):
        GaussianConfig(output_dim=0)
    with pytest.raises(ValueError, match="output_dim"):
        TrainConfig(train_file="x", output_dim=0)
    with pytest.raises(ValueError, match="geometry"):
        GaussianConfig(geometry="cosine")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train(_cfg(tmp_path, pairs_file, resume_from=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError):
        GaussianEmbedder.load(tmp_path / "nope")
    with pytest.raises(ValueError, match="fractions"):
        split_pairs(load_pairs(pairs_file), (0.5, 0.5, 0.5))


def test_geometry_scores_and_retriever() -> None:
    q, d = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert torch.allclose(geometry_scores(q, d, "euclidean"), torch.tensor([[-5.0, -1.0]]))
    assert torch.allclose(geometry_scores(torch.tensor([[1.0, 1.0]]), d, "inner_product"), torch.tensor([[7.0, 1.0]]))
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:128", output_dim=128, dropout=0.0), device="cpu")
    ret = GaussianRetriever(model)
    ret.add_documents(DOCS)
    hits = ret.retrieve("Cats are small felines", top_k=3)
    assert hits[0][0] == DOCS[0] and len(hits) == 3 and hits[0][1] >= hits[1][1]
    with pytest.raises(ValueError, match="top_k"):
        ret.retrieve("x", top_k=0)
    out = evaluate_model(model, {"corpus": {f"d{i}": t for i, t in enumerate(DOCS)}, "queries": {"q": "purring cats hunt mice"}, "qrels": {"q": {"d0": 1}}})
    assert out["metrics"]["recall@100"] == 1.0 and "effective_rank" in format_table(out)


def test_cli_end_to_end(tmp_path, capsys) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("\n\n".join(DOCS * 2), encoding="utf-8")
    data = tmp_path / "data"
    assert main(["prepare-data", str(docs), "--output", str(data), "--negatives"]) == 0
    assert main(["train", "--train-file", str(data / "train.jsonl"), "--val-file", str(data / "val.jsonl"), "--output", str(tmp_path / "run"),
                 "--backbone", "hashing:64", "--output-dim", "16", "--batch-size", "4", "--epochs", "2", "--no-progress", "--device", "cpu"]) == 0
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best_model"), "--eval-file", str(data / "eval.json"), "--output", str(report), "--device", "cpu"]) == 0
    res = json.loads(report.read_text())
    assert set(res["metrics"]) >= {"recall@1", "recall@100", "mrr", "ndcg@10", "map@100"}
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best_model"), "--eval-file", str(data / "eval.json"),
                 "--output", str(report), "--device", "cpu", "--baseline"]) == 0
    res = json.loads(report.read_text())
    assert res["baseline"]["geometry"] == "cosine" and set(res["baseline"]["metrics"]) == set(res["metrics"])
    assert "ndcg@10" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tmp_path / "missing"), "--eval-file", str(data / "eval.json")]) == 2
    (tmp_path / "empty.csv").write_text("")
    assert main(["prepare-data", str(tmp_path / "empty.csv"), "--output", str(tmp_path / "x")]) == 2
