"""Evaluation: queries judged only non-relevant, the baseline's token limit, the backbone's position limit."""

from __future__ import annotations

import json

import pytest

from rag_relax_plugins.cli import main
from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder
from rag_relax_plugins.training.gaussian_eval import evaluate_model

DATA = {"corpus": {"d0": "cats purr", "d1": "dogs bark", "d2": "bees make honey"},
        "queries": {"q0": "cats purr", "q1": "dogs bark"}, "qrels": {"q0": {"d0": 1}}}


def test_queries_judged_only_non_relevant_are_left_out() -> None:
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=64, freeze="all"), device="cpu")
    one = evaluate_model(model, DATA)
    both = evaluate_model(model, {**DATA, "qrels": {"q0": {"d0": 1}, "q1": {"d1": 0, "d2": 0}}})
    assert one["num_queries"] == both["num_queries"] == 1
    assert both["metrics"] == one["metrics"] and one["metrics"]["recall@1"] == 1.0
    with pytest.raises(ValueError, match="relevant"):
        evaluate_model(model, {**DATA, "qrels": {"q1": {"d1": 0}}})



def test_a_one_document_corpus_gives_its_metrics_without_diagnostics(tmp_path, capsys) -> None:
    """The SIGReg diagnostics need two documents: a one-document corpus lost its metrics to
    "z must hold at least 2 samples, got shape (1, 64)"."""
    from rag_relax_plugins.training.gaussian_eval import embedding_diagnostics

    model = GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=64, freeze="all"), device="cpu")
    data = {"corpus": {"d0": "cats purr"}, "queries": {"q0": "cats purr"}, "qrels": {"q0": {"d0": 1}}}
    result = evaluate_model(model, data)
    assert result["metrics"]["recall@1"] == 1.0 and result["diagnostics"] == {} and result["num_docs"] == 1
    with pytest.raises(ValueError, match=r"x must be \(N, D\) embeddings with N >= 2, got shape \(1, 64\)"):
        embedding_diagnostics(model.encode(["cats purr"]))
    model.save(tmp_path / "m")
    (tmp_path / "eval.json").write_text(json.dumps(data), encoding="utf-8")
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--eval-file", str(tmp_path / "eval.json")]) == 0
    assert "recall@1" in capsys.readouterr().out

@pytest.mark.parametrize("explicit", [False, True], ids=["default_baseline", "explicit_backbone"])
def test_baseline_reads_as_many_tokens_as_the_model(minilm_path, tmp_path, explicit) -> None:
    from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder

    long = "the history of the Roman empire " * 10
    data = {"corpus": {"d0": long + "ends with cats", "d1": long + "ends with dogs", "d2": "bees make honey"},
            "queries": {"q": "cats"}, "qrels": {"q": {"d0": 1}}}
    (tmp_path / "eval.json").write_text(json.dumps(data))
    GaussianEmbedder(GaussianConfig(output_dim=8, freeze="all", max_seq_length=16), device="cpu").save(tmp_path / "m")
    report = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--eval-file", str(tmp_path / "eval.json"),
                 "--output", str(report), "--device", "cpu", "--baseline", *([minilm_path] if explicit else [])]) == 0
    got = json.loads(report.read_text())["baseline"]["diagnostics"]["per_dim_std"]
    short = evaluate_model(SentenceTransformerEncoder(None, device="cpu", max_seq_length=16), data, geometry="cosine")
    full = evaluate_model(SentenceTransformerEncoder(None, device="cpu"), data, geometry="cosine")
    assert short["diagnostics"]["per_dim_std"] != pytest.approx(full["diagnostics"]["per_dim_std"], abs=1e-3)
    assert got == pytest.approx(short["diagnostics"]["per_dim_std"], abs=1e-4)


def test_max_seq_length_beyond_the_backbone_positions_refused(minilm_path) -> None:
    """A Gaussian model over MiniLM (512 positions) cannot read 600 word pieces: refused when built
    (it was accepted, and the first text longer than 512 word pieces crashed the transformer)."""
    with pytest.raises(ValueError, match="max_seq_length 600 exceeds the 512"):
        GaussianEmbedder(GaussianConfig(output_dim=8, freeze="all", max_seq_length=600), device="cpu")
    model = GaussianEmbedder(GaussianConfig(output_dim=8, freeze="all", max_seq_length=512), device="cpu")
    assert model.encode(["word " * 700]).shape == (1, 8)


def test_evaluate_output_never_destroys_inputs_or_other_files(tmp_path, capsys) -> None:
    """evaluate -o replaced any file: the eval file, the model's config.json, a user's notes."""
    (tmp_path / "eval.json").write_text(json.dumps(DATA))
    GaussianEmbedder(GaussianConfig(backbone="hashing:64", output_dim=64, freeze="all"), device="cpu").save(tmp_path / "m")
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    config = (tmp_path / "m" / "config.json").read_text()
    base = ["evaluate", "--model", str(tmp_path / "m"), "--eval-file", str(tmp_path / "eval.json"), "--device", "cpu"]
    for target, message in ((tmp_path / "eval.json", "is the --eval-file"),
                            (tmp_path / "m" / "config.json", "inside the --model folder"),
                            (notes, "not an evaluation report; pass --overwrite")):
        assert main([*base, "--output", str(target)]) == 2
        assert message in capsys.readouterr().err
    assert json.loads((tmp_path / "eval.json").read_text()) == DATA
    assert (tmp_path / "m" / "config.json").read_text() == config and notes.read_text() == "keep me"
    report = tmp_path / "r.json"
    assert main([*base, "--output", str(report)]) == 0
    assert main([*base, "--output", str(report)]) == 0  # an earlier report is replaced
    assert main([*base, "--output", str(notes), "--overwrite"]) == 0
    assert "metrics" in json.loads(notes.read_text())


def test_an_output_under_a_file_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch) -> None:
    """``-o notes.txt/r.json`` (notes.txt a file) was found after the whole evaluation (review)."""
    import rag_relax_plugins.training.gaussian_eval as ge

    (tmp_path / "eval.json").write_text(json.dumps(DATA))
    GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8), device="cpu").save(tmp_path / "m")
    (tmp_path / "notes.txt").write_text("keep me")
    monkeypatch.setattr(ge, "evaluate_model", lambda *a, **k: pytest.fail("evaluated before the output check"))
    base = ["evaluate", "--model", str(tmp_path / "m"), "--eval-file", str(tmp_path / "eval.json"), "--output"]
    assert main([*base, str(tmp_path / "notes.txt" / "sub" / "r.json")]) == 2
    assert "notes.txt is not a folder" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "notes.txt" / ".." / "r.json")]) == 2  # the OS cannot read notes.txt/..
    assert "notes.txt is not a folder" in capsys.readouterr().err
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert main([*base, str(tmp_path / "dangling" / "r.json")]) == 2
    assert "dangling is not a folder" in capsys.readouterr().err


def test_a_missing_baseline_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch) -> None:
    """``--baseline /nonexistent`` was refused after the model's whole evaluation, whose report was lost."""
    import rag_relax_plugins.training.gaussian_eval as ge

    (tmp_path / "eval.json").write_text(json.dumps(DATA))
    GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8), device="cpu").save(tmp_path / "m")
    monkeypatch.setattr(ge, "evaluate_model", lambda *a, **k: pytest.fail("evaluated before the baseline check"))
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--eval-file", str(tmp_path / "eval.json"),
                 "--baseline", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    assert f"error: --baseline {tmp_path / 'nothing'}: model_name_or_path" in capsys.readouterr().err


def test_a_cutoff_past_100_ranks_that_deep() -> None:
    """Rankings were cut at 100: recall@200 read a gold document at rank 151 as missing (0.0)."""
    import torch

    from rag_relax_plugins.core.metrics import deepest_cutoff
    from rag_relax_plugins.training.gaussian_eval import retrieval_metrics

    g = torch.Generator().manual_seed(0)
    docs, query = torch.randn(300, 8, generator=g), torch.randn(1, 8, generator=g)
    gold = str(int((query @ docs.T)[0].argsort(descending=True)[150]))  # rank 151
    out = retrieval_metrics(query, docs, [str(i) for i in range(300)], [{gold: 1.0}], geometry="inner_product",
                            metrics=["recall@100", "recall@200", "mrr"])
    assert out["recall@100"] == 0.0 and out["recall@200"] == 1.0
    assert out["mrr"] == pytest.approx(1 / 151)  # within the 200 ranked
    assert retrieval_metrics(query, docs, [str(i) for i in range(300)], [{gold: 1.0}], geometry="inner_product",
                             metrics=["mrr"])["mrr"] == 0.0  # plain MRR ranks 100 deep, as documented
    assert deepest_cutoff(["mrr", "recall@5", "ndcg@10"]) == 10 and deepest_cutoff(["mrr"]) is None


def test_an_unloadable_source_backbone_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch) -> None:
    """``--baseline`` (auto) on a model whose recorded source backbone was moved or deleted failed
    after the model's whole evaluation, with no report written (review 2026-12-05)."""
    from types import SimpleNamespace

    import rag_relax_plugins.training.gaussian_eval as ge

    (tmp_path / "eval.json").write_text(json.dumps(DATA))
    GaussianEmbedder(GaussianConfig(backbone="hashing:32", output_dim=8), device="cpu").save(tmp_path / "m")
    gone = str(tmp_path / "mini")  # the local copy a model was trained from, deleted since
    moved = SimpleNamespace(backbone=object(), backbone_fine_tuned=True, base_backbone=gone,
                            config=SimpleNamespace(backbone=gone))
    monkeypatch.setattr(GaussianEmbedder, "load", classmethod(lambda cls, *a, **k: moved))
    monkeypatch.setattr(ge, "evaluate_model", lambda *a, **k: pytest.fail("evaluated before the baseline loaded"))
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--eval-file", str(tmp_path / "eval.json"),
                 "--output", str(tmp_path / "r.json"), "--baseline", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"--baseline: the backbone the model started from ({gone}) cannot be loaded" in err
    assert "--baseline PATH" in err and not (tmp_path / "r.json").exists()
