"""MaxSimReranker logic on the hashing test double (fast, no model download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rag_relax_plugins.embedders.base import TokenEmbeddings
from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.rerankers.base import BaseReranker
from rag_relax_plugins.rerankers.maxsim import (
    MaxSimConfig,
    MaxSimHead,
    MaxSimReranker,
    pack_tokens,
)

DIM = 64
DOCS = [
    "The Eiffel Tower is in Paris, France.",
    "Bananas are yellow fruit rich in potassium.",
    "Paris is the capital of France and its largest city.",
    "",
    "Tokyo is the capital of Japan.",
]
QUERY = "What is the capital of France?"


def make(projection_dim: int | None = 16, seed: int = 0) -> MaxSimReranker:
    enc = HashingEncoder(dim=DIM, seed=1)
    cfg = MaxSimConfig(projection_dim=projection_dim, token_dim=DIM, seed=seed)
    return MaxSimReranker(cfg, encoder=enc, batch_size=2)


def brute_force(rr: MaxSimReranker, query: str, docs: list[str]) -> torch.Tensor:
    """Per-document loop, explicit max and mean: the reference for the packed fast path."""
    enc = rr.encoder
    q = enc.encode_tokens([rr.config.query_marker + query])
    qv = rr.head(q.embeddings[0][q.mask[0]])  # (Lq, d)
    out = []
    for d in docs:
        e = enc.encode_tokens([rr.config.document_marker + d])
        dv = rr.head(e.embeddings[0][e.mask[0]])  # (Ld, d)
        best = [max(float(qi @ dj) for dj in dv) if len(dv) else 0.0 for qi in qv]
        out.append(sum(best) / len(best))
    return torch.tensor(out)


def test_is_a_base_reranker() -> None:
    assert isinstance(make(), BaseReranker)


@pytest.mark.parametrize("projection_dim", [None, 16])
def test_score_matches_brute_force(projection_dim: int | None) -> None:
    rr = make(projection_dim)
    fast = rr.score(QUERY, DOCS)
    assert fast.dtype == torch.float32 and fast.shape == (len(DOCS),) and fast.device.type == "cpu"
    with torch.no_grad():
        ref = brute_force(rr, QUERY, DOCS)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    assert bool((fast <= 1 + 1e-6).all()) and bool((fast >= -1 - 1e-6).all())


def test_rerank_order_top_n_and_determinism() -> None:
    rr = make(None)
    res = rr.rerank(QUERY, DOCS)
    scores = [r.score for r in res]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r.index for r in res) == list(range(len(DOCS)))
    assert res[0].index == 2  # the passage about Paris being the capital of France
    top = rr.rerank(QUERY, DOCS, top_n=2)
    assert [r.index for r in top] == [r.index for r in res[:2]]
    assert rr.rerank(QUERY, DOCS, top_n=99) == res
    assert rr.rerank(QUERY, DOCS) == res  # deterministic
    assert torch.equal(rr.score(QUERY, DOCS), rr.score(QUERY, DOCS))


def test_bad_input() -> None:
    rr = make()
    assert rr.rerank(QUERY, []) == []
    assert rr.score(QUERY, []).shape == (0,)
    with pytest.raises(ValueError, match="top_n"):
        rr.rerank(QUERY, DOCS, top_n=0)
    with pytest.raises(TypeError, match="top_n"):
        rr.rerank(QUERY, DOCS, top_n=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        rr.rerank(QUERY, ["a", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="query"):
        rr.rerank(None, DOCS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="documents"):
        rr.score(QUERY, "a single string")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="projection_dim"):
        MaxSimConfig(projection_dim=0)
    with pytest.raises(TypeError, match="max_seq_length"):
        MaxSimConfig(max_seq_length=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query_marker"):
        MaxSimConfig(query_marker=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown"):
        MaxSimConfig.from_dict({"projection": 3})
    with pytest.raises(ValueError, match="token_dim"):
        MaxSimReranker(MaxSimConfig(token_dim=384), encoder=HashingEncoder(dim=DIM))
    with pytest.raises(TypeError, match="encoder"):
        MaxSimReranker(MaxSimConfig(token_dim=DIM), encoder=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        MaxSimReranker(MaxSimConfig(token_dim=DIM), encoder=HashingEncoder(dim=DIM), batch_size=0)
    cfg = MaxSimConfig(projection_dim=None, token_dim=DIM)
    assert MaxSimConfig.from_dict(cfg.to_dict()) == cfg and cfg.output_dim == DIM


@pytest.mark.parametrize("length", [1, 4, 7])
def test_a_max_seq_length_that_leaves_no_room_for_text_is_refused(length: int) -> None:
    """At 4 or 5 word pieces every document was cut to about its marker: all scored alike."""
    with pytest.raises(ValueError, match="max_seq_length must be >= 8"):
        MaxSimConfig(max_seq_length=length)
    assert MaxSimConfig(max_seq_length=8).max_seq_length == 8


def test_an_encoder_that_truncates_elsewhere_than_the_config_is_refused() -> None:
    """save() recorded config.max_seq_length, which the encoder never used: the reloaded reranker
    truncated elsewhere and ranked differently."""
    enc = HashingEncoder(dim=DIM)
    enc.max_seq_length = 16  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"the encoder truncates at 16 tokens but config.max_seq_length=256"):
        MaxSimReranker(MaxSimConfig(token_dim=DIM), encoder=enc)
    assert MaxSimReranker(MaxSimConfig(token_dim=DIM, max_seq_length=16), encoder=enc).config.max_seq_length == 16


def test_pack_tokens_matches_mask_order() -> None:
    emb = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    packed = pack_tokens(TokenEmbeddings(emb, mask))
    assert packed.offsets.tolist() == [0, 2, 3]
    torch.testing.assert_close(packed.tokens, torch.stack([emb[0, 0], emb[0, 1], emb[1, 0]]))
    assert packed.lengths.tolist() == [2, 1]


def test_head_orthonormal_init_and_unit_output() -> None:
    head = MaxSimHead(DIM, 16, seed=3)
    assert head.proj is not None
    w = head.proj.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)
    x = torch.randn(5, 7, DIM)
    y = head(x)
    assert y.shape == (5, 7, 16)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(5, 7))
    same = MaxSimHead(DIM, 16, seed=3)
    assert torch.equal(same.proj.weight, w)  # type: ignore[union-attr]
    other = MaxSimHead(DIM, 16, seed=4)
    assert not torch.equal(other.proj.weight, w)  # type: ignore[union-attr]


def test_gradcheck_head_and_scores_float64() -> None:
    torch.manual_seed(0)
    head = MaxSimHead(6, 4, seed=0).double()
    q = torch.randn(2, 3, 6, dtype=torch.float64)
    q_mask = torch.tensor([[True, True, False], [True, True, True]])
    docs = torch.randn(7, 6, dtype=torch.float64)
    offsets = torch.tensor([0, 3, 3, 7])  # an empty document in the middle
    w = head.proj.weight.detach().clone().requires_grad_(True)  # type: ignore[union-attr]

    def fn(weight: torch.Tensor, qq: torch.Tensor, dd: torch.Tensor) -> torch.Tensor:
        qv = torch.nn.functional.normalize(qq @ weight.T, dim=-1) * q_mask[..., None]
        dv = torch.nn.functional.normalize(dd @ weight.T, dim=-1)
        return MaxSimReranker.score_tokens(qv, q_mask, dv, offsets)

    out = fn(w, q, docs)
    assert out.shape == (2, 3) and float(out[0, 1].detach()) == 0.0  # the empty document scores 0
    assert torch.autograd.gradcheck(fn, (w, q.requires_grad_(True), docs.requires_grad_(True)))
    # the module path gives the same scores as the functional one
    qv = head(q.detach()) * q_mask[..., None]
    torch.testing.assert_close(MaxSimReranker.score_tokens(qv, q_mask, head(docs.detach()), offsets), out.detach())


def test_relevance_mapping() -> None:
    s = torch.tensor([-1.0, 0.0, 1.0, 1.2])
    assert MaxSimReranker.relevance(s).tolist() == [0.0, 0.5, 1.0, 1.0]


def test_save_load_round_trip(tmp_path: Path) -> None:
    rr = make(16, seed=5)
    with torch.no_grad():
        rr.head.proj.weight.mul_(1.5).add_(0.01)  # type: ignore[union-attr]
    folder = rr.save(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == [".rag_relax_save.json", "config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind
    back = MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM, seed=1))
    assert back.config == rr.config
    assert torch.equal(back.score(QUERY, DOCS), rr.score(QUERY, DOCS))
    rr.save(folder)  # overwriting an existing folder works
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format_version"] == 1 and meta["type"] == "maxsim"
    meta["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format"):
        MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM))
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        MaxSimReranker.load(tmp_path / "nothing", encoder=HashingEncoder(dim=DIM))


def test_load_rejects_mismatched_weights(tmp_path: Path) -> None:
    folder = make(16).save(tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    meta["projection_dim"] = 8
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match"):
        MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM))


def test_trainable_backbone_needs_sentence_transformer() -> None:
    with pytest.raises(TypeError, match="sentence-transformers"):
        make().trainable_backbone_parameters(1)


def test_load_names_the_corrupt_file(tmp_path: Path) -> None:
    """Truncated files give a ValueError naming the file (the CLI prints it), not a bare library error."""
    folder = make(16).save(tmp_path / "m")
    good = (folder / "config.json").read_text()
    (folder / "config.json").write_text(good[:5])
    with pytest.raises(ValueError, match=r"config\.json: not a readable JSON file"):
        MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM))
    (folder / "config.json").write_text(good)
    (folder / "model.safetensors").write_bytes(b"\x01\x00")
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM))


def _saved_with(tmp_path: Path, field: str, value: object) -> Path:
    """A saved reranker whose config.json has ``field`` set to ``value`` by hand."""
    folder = make(16).save(tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    meta[field] = value
    (folder / "config.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("field, value", [("projection_dim", -1), ("max_seq_length", "64")])
def test_load_names_the_config_file_holding_a_bad_value(tmp_path: Path, field: str, value: object) -> None:
    """A bad value gave "projection_dim must be >= 1" without the file, a wrong type a TypeError
    (review); GumbelReranker.load names the file."""
    folder = _saved_with(tmp_path, field, value)
    with pytest.raises(ValueError, match=rf"config\.json: .*{field}.*\(corrupt or hand-edited file\?\)"):
        MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM))


@pytest.mark.parametrize("field, value, match", [
    ("token_dim", 128, r"encoder token size 64 does not match config.token_dim=128"),
    ("trained_layers", 99, r"train_last_layers needs a sentence-transformers BERT-like backbone"),
])
def test_load_names_the_config_file_whose_values_do_not_fit_the_backbone(
    tmp_path: Path, field: str, value: object, match: str
) -> None:
    """Values valid alone but not for the backbone were checked by the constructor, unnamed
    ("last_layers must be <= 6" for trained_layers 99, a parameter the user never passed; review)."""
    folder = _saved_with(tmp_path, field, value)
    with pytest.raises(ValueError, match=rf"config\.json: {match}.*does not fit the backbone"):
        MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM))


def test_load_refuses_a_folder_of_another_model_type(tmp_path: Path) -> None:
    """A config.json whose "type" is not "maxsim" (or, for a save without a type, whose keys are not
    MaxSimConfig fields, e.g. a Gumbel reranker's) is refused by name; an older MaxSim save
    without a type still loads."""
    folder = make(16, seed=3).save(tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "type": "gumbel"}))
    with pytest.raises(ValueError, match="not a MaxSim reranker"):
        MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM, seed=1))
    gumbel_like = {"format_version": 1, "k": 2, "mode": "l2x", "tau": 1.0, "kappa": 1.0, "batch_size": 16}
    (folder / "config.json").write_text(json.dumps(gumbel_like))
    with pytest.raises(ValueError, match="not a MaxSim reranker"):
        MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM, seed=1))
    meta.pop("type")
    (folder / "config.json").write_text(json.dumps(meta))  # an older save: no "type"
    back = MaxSimReranker.load(folder, encoder=HashingEncoder(dim=DIM, seed=1))
    assert torch.equal(back.score(QUERY, DOCS), make(16, seed=3).score(QUERY, DOCS))


def test_load_recovers_the_backup_a_crash_left(tmp_path: Path) -> None:
    """Between the two renames of a replacing save only ``.<name>.old-*`` exists; load finds it."""
    import os

    rr = make(16, seed=4)
    folder = rr.save(tmp_path / "m")
    os.replace(folder, tmp_path / ".m.old-abc123")
    back = MaxSimReranker.load(tmp_path / "m", encoder=HashingEncoder(dim=DIM, seed=1))
    assert torch.equal(back.score(QUERY, DOCS), rr.score(QUERY, DOCS))


def test_concurrent_scoring_keeps_each_modules_own_mode() -> None:
    """Scoring switches the head (and a shared encoder's model) to eval mode and back; two threads
    doing it at once without a lock left the head in eval mode for good (its training mode lost)
    or scored in training mode (review). The second scorer now waits for the first."""
    import threading

    rr = make(16)
    rr.head.train()
    entered, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with rr._inference():
            entered.set()
            release.wait(5)

    def second() -> None:
        with rr._inference():
            second_in.set()

    a = threading.Thread(target=first)
    a.start()
    assert entered.wait(5)
    b = threading.Thread(target=second)
    b.start()
    assert not second_in.wait(0.3)  # blocked while the first holds the head in eval mode
    release.set()
    a.join(5)
    b.join(5)
    assert second_in.is_set() and rr.head.training
