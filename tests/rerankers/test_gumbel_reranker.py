"""GumbelReranker: scoring, rerank contract, training mask, persistence, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _gumbel_helpers import tiny_scorer

from rag_relax_plugins.rerankers.base import BaseReranker
from rag_relax_plugins.rerankers.gumbel import GumbelReranker, relevance

Q = "which fruit is red?"
DOCS = [
    "apples are red fruit",
    "stones are grey",
    "the sky is blue",
    "cherries are red too",
    "sand",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def reranker(minilm_path: str) -> GumbelReranker:
    return GumbelReranker(tiny_scorer(minilm_path), k=2, batch_size=2, device="cpu")


def test_is_a_base_reranker(reranker: GumbelReranker) -> None:
    assert isinstance(reranker, BaseReranker)


def test_score_shape_dtype_and_determinism(reranker: GumbelReranker) -> None:
    s = reranker.score(Q, DOCS)
    assert s.shape == (5,) and s.dtype == torch.float32 and s.device.type == "cpu"
    assert torch.equal(s, reranker.score(Q, DOCS))
    assert not reranker.scorer.training


def test_batching_does_not_change_scores(reranker: GumbelReranker) -> None:
    small = reranker.score(Q, DOCS)
    reranker.batch_size = 16
    assert torch.allclose(small, reranker.score(Q, DOCS), atol=1e-5)


def test_length_sorted_batches_give_each_candidate_its_own_score(reranker: GumbelReranker) -> None:
    # batches are built longest first (less padding); the scores must come back in input order
    alone = torch.cat([reranker.score(Q, [d]) for d in DOCS])
    assert torch.allclose(reranker.score(Q, DOCS), alone, atol=1e-5)
    assert torch.allclose(reranker.score(Q, DOCS[::-1]), alone.flip(0), atol=1e-5)


def test_rerank_order_and_top_n(reranker: GumbelReranker) -> None:
    scores = reranker.score(Q, DOCS)
    res = reranker.rerank(Q, DOCS, top_n=3)
    assert [r.index for r in res] == torch.sort(scores, descending=True, stable=True).indices[
        :3
    ].tolist()
    assert [r.score for r in res] == sorted((r.score for r in res), reverse=True)
    assert len(reranker.rerank(Q, DOCS, top_n=50)) == 5
    assert reranker.rerank(Q, []) == []


@pytest.mark.parametrize(
    ("query", "docs", "top_n", "exc"),
    [
        (Q, DOCS, 0, ValueError),
        (Q, DOCS, 1.5, TypeError),
        (Q, ["ok", 3], None, TypeError),
        (7, DOCS, None, TypeError),
        (Q, "not a list", None, TypeError),
    ],
)
def test_rerank_bad_input(
    reranker: GumbelReranker, query: object, docs: object, top_n: object, exc: type
) -> None:
    with pytest.raises(exc):
        reranker.rerank(query, docs, top_n=top_n)  # type: ignore[arg-type]


def test_score_rejects_empty(reranker: GumbelReranker) -> None:
    with pytest.raises(ValueError, match="at least one"):
        reranker.score(Q, [])


def test_training_mask_and_gradients(reranker: GumbelReranker) -> None:
    gen = torch.Generator().manual_seed(0)
    scores = reranker.training_scores(Q, DOCS)
    mask = reranker.training_mask(scores, generator=gen)
    md = mask.detach()
    assert md.shape == (5,) and bool(((md >= 0) & (md <= 1)).all()) and float(md.sum()) <= 2 + 1e-5
    (mask * torch.arange(5.0)).sum().backward()
    head = reranker.scorer.get_parameter("head.weight")
    assert head.grad is not None and float(head.grad.abs().sum()) > 0
    again = reranker.training_mask(scores.detach(), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(mask.detach(), again)


def test_training_mask_clips_k_to_candidates(reranker: GumbelReranker) -> None:
    m = reranker.training_mask(torch.tensor([0.1]), k=3)
    assert m.shape == (1,)


def test_training_mask_takes_its_k_argument(minilm_path: str) -> None:
    """With one candidate any k clipped to 1, so the test above could not tell whether the k
    argument was used at all: here k differs from the reranker's own and the candidates outnumber it."""
    r = GumbelReranker(tiny_scorer(minilm_path), k=2, mode="subset", device="cpu")
    s = torch.randn(6, generator=torch.Generator().manual_seed(3))
    for k in (1, 3, 5):
        m = r.training_mask(s, k=k, generator=torch.Generator().manual_seed(1))
        assert float(m.sum()) == pytest.approx(k, abs=1e-4), k
    assert torch.equal(r.training_mask(s, k=9), torch.ones(6))  # k > N: every candidate kept
    assert float(r.training_mask(s).sum()) == pytest.approx(2, abs=1e-4)  # the reranker's own k


def test_hard_topk_is_deterministic(reranker: GumbelReranker) -> None:
    s = torch.tensor([0.1, 2.0, -1.0, 1.5])
    assert reranker.hard_topk(s).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert reranker.hard_topk(s, k=1).tolist() == [0.0, 1.0, 0.0, 0.0]  # its k argument, not the reranker's
    assert reranker.hard_topk(s, k=7).tolist() == [1.0, 1.0, 1.0, 1.0]  # clipped to N


def test_subset_mode_sums_to_k(minilm_path: str) -> None:
    r = GumbelReranker(tiny_scorer(minilm_path), k=2, mode="subset", device="cpu")
    m = r.training_mask(torch.randn(6), generator=torch.Generator().manual_seed(1))
    assert torch.isclose(m.sum(), torch.tensor(2.0), atol=1e-4)


def test_save_and_load_round_trip(reranker: GumbelReranker, tmp_path: Path) -> None:
    with torch.no_grad():
        reranker.scorer.get_parameter("head.weight").add_(0.1)
    folder = reranker.save_pretrained(tmp_path / "model")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temp left
    assert (folder / "model.safetensors").is_file() and not list(folder.rglob("*.bin"))
    loaded = GumbelReranker.from_pretrained(folder, device="cpu")
    assert torch.allclose(loaded.score(Q, DOCS), reranker.score(Q, DOCS), atol=1e-6)
    assert (loaded.k, loaded.mode, loaded.tau, loaded.kappa) == (
        reranker.k,
        reranker.mode,
        reranker.tau,
        reranker.kappa,
    )


def test_save_writes_its_type_and_load_refuses_other_folders(reranker: GumbelReranker, tmp_path: Path) -> None:
    """config.json says "type": "gumbel"; a MaxSim folder, or corrupt files, give a ValueError that
    names the file (the CLI prints it) instead of a bare JSON or safetensors error."""
    from rag_relax_plugins.embedders.hashing import HashingEncoder
    from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker

    folder = reranker.save_pretrained(tmp_path / "m")
    good = (folder / "config.json").read_text()
    assert json.loads(good)["type"] == "gumbel"
    maxsim = MaxSimReranker(MaxSimConfig(projection_dim=4, token_dim=16), encoder=HashingEncoder(dim=16))
    other = maxsim.save(tmp_path / "maxsim")
    with pytest.raises(ValueError, match="holds a saved maxsim-reranker, not a gumbel-reranker"):
        GumbelReranker.from_pretrained(other)
    (other / ".rag_relax_save.json").unlink()  # a save from before the markers: config.json's type tells
    with pytest.raises(ValueError, match="not a Gumbel reranker"):
        GumbelReranker.from_pretrained(other)
    (folder / "config.json").write_text(good[:7])
    with pytest.raises(ValueError, match=r"config\.json: not a readable JSON file"):
        GumbelReranker.from_pretrained(folder)
    (folder / "config.json").write_text(good)
    (folder / "scorer.json").write_text("{")
    with pytest.raises(ValueError, match=r"scorer\.json: not a readable JSON file"):
        GumbelReranker.from_pretrained(folder)
    reranker.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x02\x00")
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        GumbelReranker.from_pretrained(folder)
    cfg = json.loads(good)
    del cfg["type"]  # a save from before the type was written still loads
    reranker.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    assert torch.equal(GumbelReranker.from_pretrained(folder).score(Q, DOCS), reranker.score(Q, DOCS))


def test_load_recovers_the_backup_a_crash_left(reranker: GumbelReranker, tmp_path: Path) -> None:
    """Between the two renames of a replacing save only ``.<name>.old-*`` exists; load finds it."""
    import os

    folder = reranker.save_pretrained(tmp_path / "m")
    os.replace(folder, tmp_path / ".m.old-abc123")
    assert torch.equal(GumbelReranker.from_pretrained(folder).score(Q, DOCS), reranker.score(Q, DOCS))


def test_load_errors(reranker: GumbelReranker, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GumbelReranker.from_pretrained(tmp_path / "missing")
    folder = reranker.save_pretrained(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version"):
        GumbelReranker.from_pretrained(folder)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"k": 0}, ValueError),
        ({"mode": "topk"}, ValueError),
        ({"tau": 0.0}, ValueError),
        ({"kappa": -1.0}, ValueError),
        ({"batch_size": 0}, ValueError),
    ],
)
def test_constructor_validation(minilm_path: str, kwargs: dict, exc: type) -> None:
    with pytest.raises(exc):
        GumbelReranker(tiny_scorer(minilm_path), **kwargs)


def test_constructor_rejects_unknown_scorer() -> None:
    with pytest.raises(TypeError, match="scorer"):
        GumbelReranker(scorer=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scorer"):
        GumbelReranker(scorer="colbert")


def test_relevance_mapping(reranker: GumbelReranker) -> None:
    assert reranker.relevance(0.0) == 0.5 == relevance(0.0)
    assert 0.0 < relevance(-50.0) < relevance(1.0) < relevance(50.0) <= 1.0


@pytest.mark.models
def test_bi_scorer_ranks_like_minilm_cosine(minilm_path: str) -> None:
    """The untrained bi-encoder scorer is the MiniLM cosine (row (a) of the benchmark)."""
    from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder

    r = GumbelReranker("bi", backbone=minilm_path, device="cpu")
    enc = SentenceTransformerEncoder(minilm_path, device="cpu")
    q = enc.encode([Q], normalize=True)
    d = enc.encode(DOCS, normalize=True)
    cos = (d @ q.T).squeeze(1)
    assert torch.allclose(r.score(Q, DOCS) / r.scorer.log_scale.exp().item(), cos, atol=1e-4)  # type: ignore[operator]
    assert r.relevance(float(r.score(Q, DOCS)[0])) == pytest.approx(
        (float(cos[0]) + 1) / 2, abs=1e-4
    )


def test_duplicate_candidates_get_one_score_and_keep_input_order(reranker: GumbelReranker) -> None:
    """Each distinct text is scored once and its score copied to the duplicates, so copies tie
    exactly (whatever batch and padding they would have fallen in) and keep their input order."""
    seen: list[list[str]] = []
    real = reranker.scorer.forward

    def padding_sensitive(query: str, documents: list[str]) -> torch.Tensor:
        # a stand-in for the last-bit effect of padding: the score depends on the batch's widest text
        seen.append(list(documents))
        return real(query, documents) + 1e-3 * max(len(d) for d in documents)

    reranker.scorer.forward = padding_sensitive  # type: ignore[method-assign]
    dup = "apples are red fruit"
    docs = [dup, "sand", "a much longer paragraph about stones " * 4, dup, "sand"]  # batch_size 2
    scores = reranker.score(Q, docs)
    assert sorted(t for batch in seen for t in batch) == sorted(set(docs))  # each text once
    assert float(scores[0]) == float(scores[3]) and float(scores[1]) == float(scores[4])
    order = [r.index for r in reranker.rerank(Q, docs)]
    assert order.index(0) < order.index(3) and order.index(1) < order.index(4)


def test_overlapping_scoring_calls_never_run_the_scorer_in_train_mode(minilm_path: str) -> None:
    """A scorer left in train mode by a training step, two overlapping score calls (concurrent
    async reranking): A's exit restored train mode while B's forward ran (dropout on)."""
    import threading
    import time

    r = GumbelReranker(tiny_scorer(minilm_path), k=2, device="cpu")
    r.training_scores("warm up", ["a", "b"])  # leaves the scorer in train mode
    assert r.scorer.training
    a_done, seen = threading.Event(), {}
    forward = type(r.scorer).forward

    def slow_forward(self, query, documents):  # type: ignore[no-untyped-def]
        if query == "A":
            time.sleep(0.3)  # A is inside its scoring call while B starts
        else:
            a_done.wait(5)  # B's forward runs once A has returned
            seen["B"] = self.training
        return forward(self, query, documents)

    r.scorer.forward = slow_forward.__get__(r.scorer)

    def call_a() -> None:
        try:
            r.score("A", ["x", "y"])
        finally:
            a_done.set()

    ta = threading.Thread(target=call_a)
    ta.start()
    time.sleep(0.1)
    r.score("B", ["x", "y"])
    ta.join()
    assert seen["B"] is False
    assert r.scorer.training  # the caller's mode is restored after both


def test_scoring_locks_are_per_scorer_and_reentrant(minilm_path: str) -> None:
    """One process-wide lock serialised every reranker and blocked forever on a score call made
    from inside another scorer's forward (a hook asking a second reranker)."""
    import threading

    from rag_relax_plugins.core.modes import module_lock as _scorer_lock

    a = GumbelReranker(tiny_scorer(minilm_path), k=2, device="cpu")
    b = GumbelReranker(tiny_scorer(minilm_path, seed=1), k=2, device="cpu")
    assert _scorer_lock(a.scorer) is _scorer_lock(a.scorer) and _scorer_lock(a.scorer) is not _scorer_lock(b.scorer)
    want = b.score("q", ["x", "y"])
    seen: dict[str, object] = {}
    forward = type(a.scorer).forward

    def asking_b(self, query, documents):  # type: ignore[no-untyped-def]
        if not seen.get("nested"):
            seen["nested"] = True
            seen["b"] = b.score(query, documents)  # another reranker, inside a's scoring call
            seen["a"] = a.score(query, documents)  # the same scorer again: the lock is re-entrant
        return forward(self, query, documents)

    a.scorer.forward = asking_b.__get__(a.scorer)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (a.score("q", ["x", "y"]), done.set()))
    worker.start()
    assert done.wait(30), "deadlock"
    worker.join()
    assert torch.equal(seen["b"], want) and "a" in seen  # type: ignore[arg-type]


def test_a_damaged_scorer_folder_is_refused_naming_the_file(reranker: GumbelReranker, tmp_path: Path) -> None:
    """scorer.json's "64" or 64.9 were taken as ints, a missing key was a KeyError, a tensor of
    another shape a raw RuntimeError, and a missing backbone/ folder read as a hub repo id."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = reranker.save_pretrained(tmp_path / "m")
    good = json.loads((folder / "scorer.json").read_text())
    for bad in ({**good, "max_length": "64"}, {**good, "max_length": 64.9},
                {k: v for k, v in good.items() if k != "seed"}):
        (folder / "scorer.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=r"scorer\.json: (max_length|seed) must be an int"):
            GumbelReranker.from_pretrained(folder)
    (folder / "scorer.json").write_text(json.dumps({**good, "max_length": 0}))
    with pytest.raises(ValueError, match=r"scorer\.json and backbone/config\.json do not build a scorer: max_length must be an int >= 8"):
        GumbelReranker.from_pretrained(folder)
    (folder / "scorer.json").write_text(json.dumps(good))
    weights = load_file(str(folder / "model.safetensors"))
    save_file({**weights, "head.weight": weights["head.weight"][:, :-1].contiguous()}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.safetensors does not match scorer\.json"):
        GumbelReranker.from_pretrained(folder)
    save_file(weights, str(folder / "model.safetensors"))
    shutil.rmtree(folder / "backbone")
    with pytest.raises(FileNotFoundError, match="no backbone/ folder"):
        GumbelReranker.from_pretrained(folder)


@pytest.mark.parametrize("kind", ["cross", "bi"])
def test_a_max_length_past_the_backbones_positions_is_refused(minilm_path: str, kind: str) -> None:
    """--scorer-max-length 100000 was taken, and a 700-word paragraph then failed mid-training with
    "The size of tensor a (716) must match the size of tensor b (512)" (review)."""
    from transformers import AutoTokenizer, BertConfig

    from rag_relax_plugins.rerankers.cross_encoder import BiEncoderScorer, CrossEncoderScorer

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    cls = CrossEncoderScorer if kind == "cross" else BiEncoderScorer
    tok = AutoTokenizer.from_pretrained(minilm_path)
    with pytest.raises(ValueError, match="max_length 129 exceeds the backbone's 128 usable positions"):
        cls(None, max_length=129, _config=cfg, _tokenizer=tok)
    assert cls(None, max_length=128, _config=cfg, _tokenizer=tok).max_length == 128


def test_roberta_style_positions_and_old_saves_past_the_limit(minilm_path: str, tmp_path: Path, caplog) -> None:
    """RoBERTa numbers positions from pad_token_id + 1 (514 slots, 512 tokens): max_length 514
    passed the check and failed on a long input. A scorer saved before the check with a
    max_length past the positions no longer loaded: it loads capped, with a warning (review)."""
    from transformers import AutoTokenizer, BertConfig, RobertaConfig

    from rag_relax_plugins.rerankers.cross_encoder import (
        CrossEncoderScorer,
        load_scorer,
        usable_positions,
    )

    assert usable_positions(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert usable_positions(BertConfig(max_position_embeddings=512)) == 512
    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    scorer = CrossEncoderScorer(None, max_length=64, _config=cfg, _tokenizer=tok)
    (tmp_path / "s").mkdir()
    scorer.save_into(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "scorer.json").read_text())
    meta["max_length"] = 1024  # as a save from before the check could hold
    (tmp_path / "s" / "scorer.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        assert load_scorer(tmp_path / "s").max_length == 128
    assert "max_length 1024 exceeds the backbone's 128 usable positions; using 128" in caplog.text


def test_positions_of_mpnet_style_backbones_and_the_recorded_max_length(minilm_path: str, tmp_path: Path) -> None:
    """MPNet numbers positions from pad_token_id + 1 too; and a reranker loaded capped recorded
    the raw scorer.json max_length in train_config.json (review)."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer, BertConfig

    from rag_relax_plugins.rerankers.cross_encoder import CrossEncoderScorer, usable_positions
    from rag_relax_plugins.training.grerank_init import saved_scorer_settings

    assert usable_positions(SimpleNamespace(model_type="mpnet", max_position_embeddings=514, pad_token_id=1)) == 512
    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=100)
    folder = GumbelReranker(CrossEncoderScorer(None, max_length=64, _config=cfg, _tokenizer=tok), k=1,
                            device="cpu").save_pretrained(tmp_path / "r")
    meta = json.loads((folder / "scorer.json").read_text())
    meta["max_length"] = 200
    (folder / "scorer.json").write_text(json.dumps(meta))
    assert saved_scorer_settings(folder)["scorer_max_length"] == 100


def test_trainable_layers_above_the_layer_count_is_refused(minilm_path: str) -> None:
    # layers[n - t:] counted from the end: 7 of MiniLM's 6 trained one layer (review 2026-12-05)
    from rag_relax_plugins.rerankers.cross_encoder import CrossEncoderScorer

    with pytest.raises(ValueError, match=r"trainable_layers must be <= 6 .* got 7"):
        CrossEncoderScorer(minilm_path, trainable_layers=7)
    scorer = CrossEncoderScorer(minilm_path, trainable_layers=6)
    layers = scorer.backbone.encoder.layer
    assert all(p.requires_grad for layer in layers for p in layer.parameters())
    assert not any(p.requires_grad for p in scorer.backbone.embeddings.parameters())


def test_a_saved_trainable_layers_above_the_layer_count_loads_as_it_trained(
    minilm_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An earlier version saved a user's 3 for a 2-layer backbone and trained layers[2 - 3:], the top
    one: a load (a resume's optimiser state included) leaves that layer trainable, not all."""
    from rag_relax_plugins.rerankers.cross_encoder import load_scorer

    scorer = tiny_scorer(minilm_path)  # 2 layers
    folder = tmp_path / "scorer"
    folder.mkdir()
    scorer.save_into(folder)
    meta = json.loads((folder / "scorer.json").read_text())
    meta["trainable_layers"] = 3
    (folder / "scorer.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        loaded = load_scorer(folder)
    assert "exceeds the backbone's 2 layers: the top 1 stay trainable" in caplog.text
    trainable = [all(p.requires_grad for p in layer.parameters()) for layer in loaded.backbone.encoder.layer]
    assert trainable == [False, True] and loaded.trainable_layers == 3  # the recorded value, for resume checks
    loaded.eval(), scorer.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(Q, DOCS), scorer(Q, DOCS), atol=1e-6)  # the weights load as saved


def test_a_backbone_without_bert_layers_builds_and_a_layer_count_on_it_is_named(minilm_path: str) -> None:
    """Reading encoder.layer in every constructor broke a DistilBERT scorer (transformer.layer)."""
    from transformers import AutoTokenizer, DistilBertConfig

    from rag_relax_plugins.rerankers.cross_encoder import CrossEncoderScorer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                           max_position_embeddings=128)
    scorer = CrossEncoderScorer(None, max_length=64, _config=cfg, _tokenizer=tok)
    assert scorer(Q, DOCS[:2]).shape == (2,)
    head_only = CrossEncoderScorer(None, max_length=64, trainable_layers=0, _config=cfg, _tokenizer=tok)
    assert not any(p.requires_grad for p in head_only.backbone.parameters())
    with pytest.raises(ValueError, match=r"trainable_layers=1 needs a BERT-style backbone \(encoder\.layer\)"):
        CrossEncoderScorer(None, max_length=64, trainable_layers=1, _config=cfg, _tokenizer=tok)
