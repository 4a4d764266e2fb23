"""Contrastive MaxSim training: loss, token cache, loop, checkpoints and resume (hashing encoder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker
from rag_relax_plugins.training.maxsim_data import QueryGroup, TextTable, TokenCache, hotpot_split
from rag_relax_plugins.training.maxsim_train import (
    MaxSimTrainConfig,
    evaluate_groups,
    group_info_nce,
    train_maxsim,
)

DIM = 48
TOPICS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def make_reranker() -> MaxSimReranker:
    return MaxSimReranker(MaxSimConfig(projection_dim=8, token_dim=DIM, seed=0), encoder=HashingEncoder(dim=DIM, seed=2))


def synthetic() -> tuple[list[QueryGroup], TextTable, TextTable]:
    queries, texts = TextTable(), TextTable()
    groups = []
    for i, topic in enumerate(TOPICS):
        cands = [f"{TOPICS[(i + j) % len(TOPICS)]} notes number {j} about things" for j in range(4)]
        rows = tuple(texts.add(c) for c in cands)
        groups.append(QueryGroup(queries.add(f"tell me about {topic}"), rows, (0,), "bridge" if i % 2 else "comparison"))
    return groups, queries, texts


def test_group_info_nce_single_positive_is_cross_entropy() -> None:
    torch.manual_seed(0)
    s = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    loss = group_info_nce(s, [[0], [1], [2], [3]], temperature=0.5)
    ref = F.cross_entropy(s / 0.5, torch.arange(4))
    torch.testing.assert_close(loss, ref)
    assert torch.autograd.gradcheck(lambda x: group_info_nce(x, [[0], [1, 2], [2], [3]], temperature=0.5), (s,))


def test_group_info_nce_masks_other_positives() -> None:
    s = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    loss = group_info_nce(s, [[0, 1]], temperature=1.0)
    # pair (0, col 0): candidates {0, 2, 3}; pair (0, col 1): candidates {1, 2, 3}
    a = -torch.log_softmax(torch.tensor([2.0, 0.5, -1.0]), 0)[0]
    b = -torch.log_softmax(torch.tensor([1.0, 0.5, -1.0]), 0)[0]
    torch.testing.assert_close(loss, (a + b) / 2)
    with pytest.raises(ValueError, match="gold"):
        group_info_nce(s, [[]], temperature=1.0)
    with pytest.raises(ValueError, match="temperature"):
        group_info_nce(s, [[0]], temperature=0.0)
    with pytest.raises(ValueError, match="scores"):
        group_info_nce(s, [[0], [1]], temperature=1.0)


def test_token_cache_matches_direct_encoding(tmp_path: Path) -> None:
    rr = make_reranker()
    texts = ["one two three", "four", "five six"]
    cache = TokenCache.build(rr, texts, marker="[D] ", cache_dir=tmp_path)
    direct = rr.backbone_tokens(texts, marker="[D] ")
    got = cache.gather([2, 0], torch.device("cpu"))
    lengths = direct.lengths.tolist()
    assert got.lengths.tolist() == [lengths[2], lengths[0]]
    want = torch.cat([direct.tokens[direct.offsets[2] : direct.offsets[3]], direct.tokens[: direct.offsets[1]]])
    torch.testing.assert_close(got.tokens, want, atol=2e-3, rtol=2e-3)  # stored as float16
    padded, mask = cache.padded([1, 2], torch.device("cpu"))
    assert padded.shape[:2] == mask.shape and mask.sum(1).tolist() == [lengths[1], lengths[2]]
    assert float(padded[~mask].abs().sum()) == 0.0
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    # the umask's mode, as every other file the package writes (safetensors' save_file made it 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert files[0].stat().st_mode & 0o777 == 0o666 & ~umask
    again = TokenCache.build(rr, texts, marker="[D] ", cache_dir=tmp_path)  # from the file
    assert torch.equal(again.packed.tokens, cache.packed.tokens)
    TokenCache.build(rr, texts, marker="[Q] ", cache_dir=tmp_path)  # another marker: another file
    assert len(list(tmp_path.iterdir())) == 2


def test_token_cache_is_keyed_by_the_encoder_actually_used(tmp_path: Path) -> None:
    """Same config, different encoders (hashing seed; truncation length): never a shared cache file."""
    from rag_relax_plugins.training.maxsim_data import _fingerprint

    texts = ["alpha bravo charlie delta echo foxtrot golf hotel " * 3]
    cfg = MaxSimConfig(projection_dim=None, token_dim=32)
    a = MaxSimReranker(cfg, encoder=HashingEncoder(dim=32, seed=1))
    b = MaxSimReranker(cfg, encoder=HashingEncoder(dim=32, seed=2))
    ca = TokenCache.build(a, texts, marker="[D] ", cache_dir=tmp_path)
    cb = TokenCache.build(b, texts, marker="[D] ", cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    assert not torch.equal(ca.packed.tokens, cb.packed.tokens)
    direct = b.backbone_tokens(texts, marker="[D] ").tokens
    torch.testing.assert_close(cb.packed.tokens.float(), direct, atol=2e-3, rtol=2e-3)
    # an encoder's own truncation length is part of the key (SentenceTransformerEncoder.max_seq_length),
    # also when it is changed after the reranker was built (the constructor requires the config's)
    enc = HashingEncoder(dim=32, seed=1)
    enc.max_seq_length = cfg.max_seq_length  # type: ignore[attr-defined]
    rr = MaxSimReranker(cfg, encoder=enc)
    fl = _fingerprint(rr, "[D] ", texts)
    enc.max_seq_length = 16  # type: ignore[attr-defined]
    assert _fingerprint(rr, "[D] ", texts) != fl
    enc.max_seq_length = cfg.max_seq_length  # type: ignore[attr-defined]
    assert fl == _fingerprint(rr, "[D] ", texts)  # deterministic


def test_model_config_token_dim_follows_the_backbone(tmp_path: Path, minilm_path: str) -> None:
    assert MaxSimTrainConfig().model_config().token_dim == 384
    assert MaxSimTrainConfig(backbone=minilm_path).model_config().token_dim == 384
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 768}))
    assert MaxSimTrainConfig(backbone=str(tmp_path)).model_config().token_dim == 768
    assert MaxSimTrainConfig(backbone=str(tmp_path)).model_config(token_dim=32).token_dim == 32


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        MaxSimTrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="val_rows"):
        MaxSimTrainConfig(train_rows=10, val_rows=10)
    with pytest.raises(ValueError, match="temperature"):
        MaxSimTrainConfig(temperature=0)
    # the reranker's own least (MaxSimConfig): refused with the options, not later by the model
    with pytest.raises(ValueError, match=r"max_seq_length must be >= 8 \(the reranker.*, got 4"):
        MaxSimTrainConfig(max_seq_length=4)
    assert MaxSimTrainConfig(max_seq_length=8).max_seq_length == 8
    with pytest.raises(ValueError, match="unknown"):
        MaxSimTrainConfig.from_dict({"lr": 1})
    cfg = MaxSimTrainConfig(epochs=2)
    assert MaxSimTrainConfig.from_dict(cfg.to_dict()) == cfg


def test_no_projection_and_a_frozen_backbone_is_refused_before_training(tmp_path: Path) -> None:
    """projection_dim=None with train_last_layers=0 leaves no trainable parameter: a ValueError
    from the config (the CLI shows it as a message), not an autograd RuntimeError mid-run."""
    with pytest.raises(ValueError, match="nothing to train"):
        MaxSimTrainConfig(projection_dim=None)
    assert MaxSimTrainConfig(projection_dim=None, train_last_layers=1).projection_dim is None
    from rag_relax_plugins.cli import main

    rc = main(["train-maxsim", "-o", str(tmp_path / "o"), "--projection-dim", "0", "--no-progress"])
    assert rc == 2 and not (tmp_path / "o").exists()


def test_train_writes_outputs_improves_and_resumes_exactly(tmp_path: Path) -> None:
    groups, queries, texts = synthetic()
    cfg = MaxSimTrainConfig(output_dir=str(tmp_path / "a"), epochs=3, batch_size=4, hard_negatives=2,
                            learning_rate=0.05, temperature=0.1, seed=1, show_progress=False)
    rr = make_reranker()
    q = TokenCache(rr.backbone_tokens(queries.texts, marker="[Q] "))
    t = TokenCache(rr.backbone_tokens(texts.texts, marker="[D] "))
    before = evaluate_groups(rr, groups, q, t)
    result = train_maxsim(cfg, groups, queries.texts, texts.texts, val_groups=groups[:4], reranker=rr)
    hist = result["history"]
    assert result["steps"] == 6 and len(hist["step_loss"]) == 6 and len(hist["val_mrr"]) == 3
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    out = tmp_path / "a"
    for name in ("best_model", "final_model", "checkpoint_epoch_1", "checkpoint_epoch_3", "loss_curves.png",
                 "history.json", "train_config.json", "training.log"):
        assert (out / name).exists(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes left nothing behind
    after = evaluate_groups(rr, groups, q, t)
    assert set(after) == {"all", "bridge", "comparison"} and after["all"]["n"] == 8
    assert after["all"]["mrr"] >= before["all"]["mrr"]

    # resume from epoch 1 in a fresh run: same final weights as the uninterrupted run
    cfg2 = MaxSimTrainConfig(**{**cfg.to_dict(), "output_dir": str(tmp_path / "b"),
                                "resume_from": str(out / "checkpoint_epoch_1")})
    res2 = train_maxsim(cfg2, groups, queries.texts, texts.texts, val_groups=groups[:4], reranker=make_reranker())
    assert res2["steps"] == 6
    a = MaxSimReranker.load(out / "final_model", encoder=HashingEncoder(dim=DIM, seed=2))
    b = MaxSimReranker.load(tmp_path / "b" / "final_model", encoder=HashingEncoder(dim=DIM, seed=2))
    torch.testing.assert_close(a.head.proj.weight, b.head.proj.weight)  # type: ignore[union-attr]
    assert json.loads((tmp_path / "b" / "history.json").read_text())["step_loss"] == pytest.approx(hist["step_loss"])


def test_resume_after_a_mid_epoch_stop_finishes_the_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """max_steps=2 inside a 4-batch epoch, then resume: the same batches and sampled negatives as an
    uninterrupted run, step by step, and the same number of steps and epoch summaries."""
    from rag_relax_plugins.training import maxsim_train

    calls: list[tuple[list[int], torch.Tensor]] = []
    real = maxsim_train.training_step_loss

    def spy(reranker: MaxSimReranker, batch: list, cfg: MaxSimTrainConfig, **kw: object) -> torch.Tensor:
        gen = kw["gen"]
        assert isinstance(gen, torch.Generator)
        calls.append(([g.query for g in batch], gen.get_state().clone()))
        return real(reranker, batch, cfg, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(maxsim_train, "training_step_loss", spy)
    groups, queries, texts = synthetic()  # 8 groups, batch 2: 4 steps per epoch
    base = dict(epochs=2, batch_size=2, val_rows=0, train_rows=10, show_progress=False, hard_negatives=2)
    full = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "full"), **base), groups, queries.texts,
                        texts.texts, reranker=make_reranker())
    full_calls, calls[:] = list(calls), []
    train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "part"), max_steps=2, **base), groups,
                 queries.texts, texts.texts, reranker=make_reranker())
    ck = tmp_path / "part" / "checkpoint_epoch_1"
    state = json.loads((ck / "trainer_state.json").read_text())
    assert state["epoch"] == 0 and state["batch"] == 2 and len(state["epoch_losses"]) == 2
    assert state["history"]["train_loss"] == []  # the partial epoch is not summarised in the checkpoint
    res = train_maxsim(MaxSimTrainConfig(output_dir=str(tmp_path / "part"), resume_from=str(ck), **base), groups,
                       queries.texts, texts.texts, reranker=make_reranker())
    assert res["steps"] == full["steps"] == 8
    assert len(res["history"]["step_loss"]) == 8 and len(res["history"]["train_loss"]) == 2
    assert len(calls) == len(full_calls) == 8
    for (qa, ga), (qb, gb) in zip(calls, full_calls):
        assert qa == qb and torch.equal(ga, gb)


def test_train_rejects_bad_input(tmp_path: Path) -> None:
    groups, queries, texts = synthetic()
    cfg = MaxSimTrainConfig(output_dir=str(tmp_path), show_progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        train_maxsim(cfg, groups[:1], queries.texts, texts.texts, reranker=make_reranker())
    bad = MaxSimTrainConfig(output_dir=str(tmp_path), resume_from=str(tmp_path / "nope"), show_progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train_maxsim(bad, groups, queries.texts, texts.texts, reranker=make_reranker())



@pytest.mark.parametrize(("where", "damage", "match"), [
    ("groups", lambda g: QueryGroup(g.query, g.candidates, (), g.type), r"groups\[5\]: no gold candidate"),
    ("groups", lambda g: QueryGroup(g.query, g.candidates, (7,), g.type), r"groups\[5\]: gold position 7 is outside its 4"),
    ("groups", lambda g: QueryGroup(g.query, (*g.candidates[:3], 999), g.gold, g.type),
     r"groups\[5\]: candidate row 999 is not a row of the \d+ text strings"),
    ("groups", lambda g: QueryGroup(999, g.candidates, g.gold, g.type), r"groups\[5\]: query row 999"),
    ("val_groups", lambda g: QueryGroup(g.query, (*g.candidates[:3], 999), g.gold, g.type), r"val_groups\[5\]: candidate row 999"),
    # a numpy array failed with "the truth value of an array ... is ambiguous"
    ("groups", lambda g: QueryGroup(g.query, np.array(g.candidates), g.gold, g.type),
     r"groups\[5\]: candidates must be a tuple of ints, got ndarray"),
])
def test_a_bad_group_is_refused_by_name_before_anything_is_written(tmp_path: Path, where: str, damage, match: str) -> None:  # type: ignore[no-untyped-def]
    """A group with no gold, a gold position or a row out of range failed mid-run ("gold[1] must
    hold at least one positive column", IndexError) after the token cache and train_config.json
    were written; a bad validation group only after the first epoch's training."""
    groups, queries, texts = synthetic()
    bad = list(groups)
    bad[5] = damage(bad[5])
    train_groups, val = (bad, []) if where == "groups" else (groups, bad)
    cfg = MaxSimTrainConfig(output_dir=str(tmp_path / "run"), show_progress=False, batch_size=2, hard_negatives=2)
    with pytest.raises((ValueError, TypeError), match=match):
        train_maxsim(cfg, train_groups, queries.texts, texts.texts, val_groups=val, reranker=make_reranker())
    assert not (tmp_path / "run").exists()



def test_a_validation_group_without_gold_is_left_out_of_the_mrr_not_refused(tmp_path: Path) -> None:
    """Validation scores with skip_empty (hotpot_groups(skip_no_gold=False) makes such groups):
    only training groups need a gold candidate."""
    groups, queries, texts = synthetic()
    val = [groups[0], QueryGroup(groups[1].query, groups[1].candidates, (), groups[1].type)]
    cfg = MaxSimTrainConfig(output_dir=str(tmp_path / "run"), show_progress=False, batch_size=2, hard_negatives=2,
                            epochs=1)
    out = train_maxsim(cfg, groups, queries.texts, texts.texts, val_groups=val, reranker=make_reranker())
    assert len(out["history"]["val_mrr"]) == 1


def test_hotpot_split(data_dir: Path) -> None:
    split = hotpot_split(data_dir, train_rows=400, val_rows=40, evidence=False)
    assert 300 < len(split.train) <= 360 and 0 < len(split.val) <= 40 and 60 < len(split.test) <= 100
    train_q = {g.query for g in split.train + split.val}
    assert train_q.isdisjoint({g.query for g in split.test})
    for g in split.train[:20]:
        assert g.gold and all(0 <= i < len(g.candidates) for i in g.gold)
    with_ev = hotpot_split(data_dir, train_rows=400, val_rows=40, evidence=True)
    assert len(with_ev.train) > len(split.train) and with_ev.train[-1].type == "evidence"
    with pytest.raises(ValueError, match="train_rows"):
        hotpot_split(data_dir, train_rows=500)


def test_hotpot_split_reads_the_evidence_file_beside_the_distractor_file(data_dir: Path, tmp_path: Path) -> None:
    """Given the distractor file, the evidence file was looked for two folders up (the data root of
    the shared layout only): a flat folder of the two files failed, with no way to name the file."""
    import shutil

    for name in ("distractor_500.jsonl", "evidence_500.jsonl"):
        shutil.copy(data_dir / "hotpotqa" / name, tmp_path / name)
    flat = hotpot_split(tmp_path / "distractor_500.jsonl", train_rows=400, evidence=True)
    shared = hotpot_split(data_dir / "hotpotqa" / "distractor_500.jsonl", train_rows=400, evidence=True)
    assert len(flat.train) == len(shared.train) == len(hotpot_split(data_dir, train_rows=400, evidence=True).train)
    assert flat.train[-1].type == "evidence"
    (tmp_path / "evidence_500.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"evidence_500\.jsonl holds no questions"):
        hotpot_split(tmp_path / "distractor_500.jsonl", train_rows=400, evidence=True)


def test_cli_parser_has_train_maxsim() -> None:
    from rag_relax_plugins.cli import build_parser

    args = build_parser().parse_args(["train-maxsim", "-o", "x", "--epochs", "2", "--projection-dim", "0"])
    assert args.epochs == 2 and args.projection_dim == 0 and args.train_rows == 400


@pytest.mark.parametrize("name", ["learning_rate", "backbone_learning_rate", "temperature"])
def test_infinite_rates_and_temperature_refused(name: str) -> None:
    """inf passed the > 0 check: NaN scores after one step (a late, misleading error) or rc 0."""
    with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
        MaxSimTrainConfig(**{name: float("inf")})
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        MaxSimTrainConfig(weight_decay=float("inf"))


def test_corrupt_token_cache_is_encoded_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A truncated token cache was a SafetensorError traceback from train-maxsim; it is a cache."""
    rr = make_reranker()
    texts = ["one two three", "four", "five six"]
    first = TokenCache.build(rr, texts, marker="[D] ", cache_dir=tmp_path)
    (file,) = tmp_path.iterdir()
    file.write_bytes(file.read_bytes()[:50])
    with caplog.at_level("WARNING"):
        again = TokenCache.build(rr, texts, marker="[D] ", cache_dir=tmp_path)
    assert "not a readable token cache" in caplog.text
    assert torch.equal(again.packed.tokens, first.packed.tokens)


@pytest.mark.parametrize("damage", ["nan", "half_width", "offsets"])
def test_a_damaged_token_cache_is_encoded_again_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                         damage: str) -> None:
    """NaN or half-width token vectors were used silently; broken offsets failed later, in training."""
    from safetensors.torch import load_file, save_file

    rr = make_reranker()
    texts = ["one two three", "four", "five six"]
    first = TokenCache.build(rr, texts, marker="[D] ", cache_dir=tmp_path)
    (file,) = tmp_path.iterdir()
    t = load_file(str(file))
    if damage == "nan":
        t["tokens"] = torch.full_like(t["tokens"], float("nan"))
    elif damage == "half_width":
        t["tokens"] = t["tokens"][:, : t["tokens"].shape[1] // 2].contiguous()
    else:
        t["offsets"] = t["offsets"].flip(0).contiguous()
    save_file(t, str(file))
    with caplog.at_level("WARNING"):
        again = TokenCache.build(rr, texts, marker="[D] ", cache_dir=tmp_path)
    assert "not a readable token cache" in caplog.text
    assert torch.equal(again.packed.tokens, first.packed.tokens) and torch.equal(again.packed.offsets, first.packed.offsets)


_ACCELERATORS = [d for d, ok in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available())) if ok]


@pytest.mark.parametrize("where", [
    "cpu", *[pytest.param(d, marks=pytest.mark.gpu) for d in _ACCELERATORS],
])
def test_token_cache_gathers_from_a_cache_on_any_device(where: str) -> None:
    """train_last_layers > 0 builds its TokenCache from tokens encoded on the run's device; the
    gather's index aranges were CPU tensors beside those offsets: a device-mismatch RuntimeError
    at the first step on CUDA / MPS (found with an emulated device; this case runs on a real one)."""
    from rag_relax_plugins.rerankers.maxsim import PackedTokens

    tokens, offsets = torch.randn(7, 4), torch.tensor([0, 3, 5, 7])
    expected, expected_mask = TokenCache(PackedTokens(tokens, offsets)).padded([2, 0], torch.device("cpu"))
    dev = torch.device(where)
    cache = TokenCache(PackedTokens(tokens.to(dev), offsets.to(dev)))
    got, mask = cache.padded([2, 0], dev)
    assert got.device.type == where and mask.device.type == where
    assert torch.equal(got.cpu(), expected) and torch.equal(mask.cpu(), expected_mask)
    assert expected_mask.sum(1).tolist() == [2, 3] and torch.equal(expected[0, :2], tokens[5:7])


def test_a_cpu_run_leaves_the_cuda_rngs_and_the_callers_generator_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.manual_seed reseeded every CUDA device and left the caller's CPU generator at the
    run's state; now only the run's devices are seeded, inside a fork."""
    groups, queries, texts = synthetic()
    torch.manual_seed(123)
    calls: list[object] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(("all", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(("one", seed)))

    def run(folder: str, reranker: MaxSimReranker) -> list[float]:
        cfg = MaxSimTrainConfig(output_dir=str(tmp_path / folder), epochs=1, batch_size=4, hard_negatives=2,
                                learning_rate=0.05, temperature=0.1, seed=1, show_progress=False)
        return train_maxsim(cfg, groups, queries.texts, texts.texts, reranker=reranker)["history"]["step_loss"]

    reranker = make_reranker()  # (building it draws from the caller's generator: before the snapshot)
    before = torch.get_rng_state()
    first = run("a", reranker)
    assert calls == [] and torch.equal(torch.get_rng_state(), before)
    torch.rand(7)
    assert run("b", make_reranker()) == first


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_run_leaves_the_callers_cuda_and_cpu_generators_as_they_were(tmp_path: Path) -> None:
    groups, queries, texts = synthetic()
    reranker = MaxSimReranker(MaxSimConfig(projection_dim=8, token_dim=DIM, seed=0),
                              encoder=HashingEncoder(dim=DIM, seed=2), device="cuda")
    torch.manual_seed(123)
    before = (torch.get_rng_state(), torch.cuda.get_rng_state())
    cfg = MaxSimTrainConfig(output_dir=str(tmp_path / "a"), epochs=1, batch_size=4, hard_negatives=2,
                            learning_rate=0.05, temperature=0.1, seed=1, show_progress=False)
    result = train_maxsim(cfg, groups, queries.texts, texts.texts, reranker=reranker)
    assert result["steps"] == 2 and all(np.isfinite(result["history"]["step_loss"]))
    assert torch.equal(torch.get_rng_state(), before[0]) and torch.equal(torch.cuda.get_rng_state(), before[1])


def test_evaluate_groups_leaves_unjudged_groups_out() -> None:
    # groups without gold were scored 0 and counted in "n"; a type with none judged read as a
    # failed ranking (review 2026-12-05)
    groups, queries, texts = synthetic()
    rr = make_reranker()
    q = TokenCache(rr.backbone_tokens(queries.texts, marker="[Q] "))
    t = TokenCache(rr.backbone_tokens(texts.texts, marker="[D] "))
    judged = [g for g in groups if g.type == "comparison"]
    mixed = [g if g.type == "comparison" else QueryGroup(g.query, g.candidates, (), g.type) for g in groups]
    got, ref = evaluate_groups(rr, mixed, q, t), evaluate_groups(rr, judged, q, t)
    assert set(got) == {"all", "comparison"} and got["all"]["n"] == 4
    assert got["all"] == ref["all"] and got["comparison"] == ref["comparison"]
    none = evaluate_groups(rr, [QueryGroup(g.query, g.candidates, (), g.type) for g in groups], q, t)
    assert set(none) == {"all"} and none["all"]["n"] == 0 and none["all"]["mrr"] == 0.0
