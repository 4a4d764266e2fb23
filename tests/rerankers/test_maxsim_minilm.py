"""MaxSimReranker on the offline MiniLM (one encoder shared by the module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder
from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker
from rag_relax_plugins.training.maxsim_data import QueryGroup
from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig, training_step_loss

QUERY = "Which city is the capital of France?"
DOCS = [
    "Bananas are a good source of potassium.",
    "Paris is the capital and most populous city of France.",
    "The Great Wall of China is visible from many places.",
    "Lyon is a city in France known for its food.",
]


@pytest.fixture(scope="module")
def encoder(minilm_path: str) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(minilm_path, device="cpu", max_seq_length=64, batch_size=3)


def cfg(minilm_path: str, **kw: object) -> MaxSimConfig:
    return MaxSimConfig(backbone=minilm_path, max_seq_length=64, **kw)  # type: ignore[arg-type]


def test_untrained_maxsim_ranks_the_answer_first(encoder: SentenceTransformerEncoder, minilm_path: str) -> None:
    for projection in (None, 128):
        rr = MaxSimReranker(cfg(minilm_path, projection_dim=projection), encoder=encoder)
        res = rr.rerank(QUERY, DOCS)
        assert res[0].index == 1, (projection, res)
        assert all(-1.0 <= r.score <= 1.0 for r in res)


def test_batched_equals_one_at_a_time_and_is_deterministic(encoder: SentenceTransformerEncoder, minilm_path: str) -> None:
    rr = MaxSimReranker(cfg(minilm_path), encoder=encoder)
    batched = rr.score(QUERY, DOCS)
    single = torch.cat([rr.score(QUERY, [d]) for d in DOCS])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    assert torch.equal(rr.score(QUERY, DOCS), batched)
    q = rr.encode_queries([QUERY])
    n_tokens = len(encoder.tokenizer("[Q] " + QUERY)["input_ids"])
    assert q.embeddings.shape == (1, n_tokens, 128) and int(q.mask.sum()) == n_tokens


@pytest.mark.usefixtures("one_torch_thread")  # the single-thread BLAS path split the copies
def test_exact_duplicates_tie_and_keep_input_order(minilm_path: str) -> None:
    """Copies padded in different batches scored an ulp apart, so top_n could keep a later copy
    (0.6168028712 vs 0.6168029308 with batch_size 2): each distinct text is scored once."""
    rr = MaxSimReranker(MaxSimConfig(backbone=minilm_path), device="cpu", batch_size=2)
    long = ("Paris is the capital and most populous city of France, with an estimated population of two "
            "million residents in the year of the census. ") * 3
    docs = [long, "Paris is in France.", "Paris is in France.", "Paris is in France."]
    scores = rr.score("What is the capital of France?", docs)
    assert scores[1] == scores[2] == scores[3]
    assert [r.index for r in rr.rerank("What is the capital of France?", docs)][1:] == [1, 2, 3]


def test_trained_layers_are_saved_and_restored(tmp_path: Path, minilm_path: str) -> None:
    fresh = SentenceTransformerEncoder(minilm_path, device="cpu", max_seq_length=64)
    rr = MaxSimReranker(cfg(minilm_path, trained_layers=1), encoder=fresh)
    params = rr.trainable_backbone_parameters(1)
    assert params and all(name.startswith("backbone.layer.5.") for name in params)
    with torch.no_grad():
        for p in params.values():
            p.add_(0.01)
    before = rr.score(QUERY, DOCS)
    rr.save(tmp_path / "m")
    back = MaxSimReranker.load(tmp_path / "m", device="cpu")  # loads the shipped MiniLM, then layer 5
    torch.testing.assert_close(back.score(QUERY, DOCS), before, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="last_layers"):
        rr.trainable_backbone_parameters(7)
    # a stored layer tensor of another shape or dtype is refused (copy_ broadcast a (1,) tensor)
    from safetensors.torch import load_file, save_file

    key = "backbone.layer.5.output.LayerNorm.weight"
    weights = tmp_path / "m" / "model.safetensors"
    good = load_file(str(weights))
    for bad in (good[key][:1], good[key].int()):
        save_file({**good, key: bad}, str(weights))
        with pytest.raises(ValueError, match=rf"model\.safetensors: {key} is torch\.\w+ \({bad.numel()},\)"):
            MaxSimReranker.load(tmp_path / "m", device="cpu", encoder=fresh)


def test_train_last_layers_gradients_reach_only_the_unfrozen_layers(minilm_path: str) -> None:
    enc = SentenceTransformerEncoder(minilm_path, device="cpu", max_seq_length=24)
    rr = MaxSimReranker(MaxSimConfig(backbone=minilm_path, max_seq_length=24, trained_layers=1), encoder=enc)
    queries, texts = [QUERY, "Where is the Great Wall?"], DOCS
    groups = [QueryGroup(0, (0, 1, 3), (1,)), QueryGroup(1, (2, 0), (0,))]
    tcfg = MaxSimTrainConfig(train_last_layers=1, hard_negatives=1)
    for p in enc.model.parameters():
        p.requires_grad_(False)
    trainable = rr.trainable_backbone_parameters(1)
    for p in trainable.values():
        p.requires_grad_(True)
    loss = training_step_loss(rr, groups, tcfg, gen=torch.Generator().manual_seed(0), queries=None, texts=None,
                              query_strings=queries, text_strings=texts)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in trainable.values())
    assert rr.head.proj is not None and rr.head.proj.weight.grad is not None
    st: Any = enc.model
    first = next(iter(st[0].auto_model.encoder.layer[0].parameters()))
    assert first.grad is None


def _ten_hotpot_rows(tmp_path: Path, data_dir: Path) -> Path:
    """A data root (tmp_path / "data") whose HotpotQA file holds the first 10 shared rows."""
    folder = tmp_path / "data" / "hotpotqa"
    folder.mkdir(parents=True)
    lines = (data_dir / "hotpotqa" / "distractor_500.jsonl").read_text(encoding="utf-8").splitlines()[:10]
    (folder / "distractor_500.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "data"


def test_cli_train_maxsim_end_to_end(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from rag_relax_plugins.cli import main

    _ten_hotpot_rows(tmp_path, data_dir)
    out = tmp_path / "run"
    code = main(["train-maxsim", "-o", str(out), "--data", str(tmp_path / "data"), "--train-rows", "7",
                 "--val-rows", "2", "--max-seq-length", "16", "--projection-dim", "16", "--epochs", "1",
                 "--batch-size", "4", "--eval", "--no-progress"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] >= 1 and set(report["test_after"]["all"]) == {"recall@2", "recall@5", "mrr", "n"}
    back = MaxSimReranker.load(out / "best_model", device="cpu")
    assert back.config.projection_dim == 16 and back.config.max_seq_length == 16
    assert (out / "checkpoint_epoch_1" / "trainer_state.json").is_file()
    assert main(["train-maxsim", "-o", str(out), "--data", str(tmp_path / "data"), "--train-rows", "12",
                 "--val-rows", "12"]) == 2  # bad option: a clear error, exit code 2


def test_cli_eval_refuses_a_bad_resume_before_the_first_evaluation(tmp_path: Path, data_dir: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--eval ran (and cached) the whole 'before' evaluation, then found --resume-from missing."""
    from rag_relax_plugins.cli import main

    _ten_hotpot_rows(tmp_path, data_dir)
    out = tmp_path / "run"
    code = main(["train-maxsim", "-o", str(out), "--data", str(tmp_path / "data"), "--train-rows", "7",
                 "--val-rows", "2", "--max-seq-length", "16", "--projection-dim", "16", "--eval", "--no-progress",
                 "--resume-from", str(tmp_path / "nope")])
    assert code == 2 and "checkpoint not found" in capsys.readouterr().err
    assert not out.exists()  # no token cache of the 'before' evaluation


def test_an_encoder_of_another_model_than_config_backbone_is_refused(
    encoder: SentenceTransformerEncoder, minilm_path: str, tmp_path: Path
) -> None:
    """save() records config.backbone: a reranker built on an encoder of another model saved
    backbone null and reloaded on the offline MiniLM, scoring otherwise, silently (review)."""
    import shutil

    other = tmp_path / "other_minilm"
    shutil.copytree(minilm_path, other)
    moved = SentenceTransformerEncoder(str(other), device="cpu", max_seq_length=encoder.max_seq_length)
    with pytest.raises(ValueError, match=r"the encoder's model .*other_minilm.* is not config.backbone \(None, the offline MiniLM"):
        MaxSimReranker(MaxSimConfig(max_seq_length=encoder.max_seq_length), encoder=moved)
    rr = MaxSimReranker(MaxSimConfig(backbone=str(other), max_seq_length=encoder.max_seq_length), encoder=moved)
    again = MaxSimReranker.load(rr.save(tmp_path / "rr"), device="cpu")
    docs = ["Paris is the capital of France.", "Bananas are yellow."]
    assert torch.allclose(again.score("capital of France", docs), rr.score("capital of France", docs), atol=1e-5)
    MaxSimReranker(cfg(minilm_path), encoder=encoder)  # the same folder named either way
    MaxSimReranker(MaxSimConfig(max_seq_length=encoder.max_seq_length), encoder=encoder)


def test_scores_are_deterministic_with_the_shared_encoder_in_train_mode(encoder: SentenceTransformerEncoder,
                                                                        minilm_path: str) -> None:
    """score ran under inference_mode only: an encoder someone put in train mode scored with
    dropout, differently at each call (review). Each module's own mode is restored after."""
    rr = MaxSimReranker(cfg(minilm_path), encoder=encoder)
    docs = ["Paris is the capital of France.", "Bananas are yellow."]
    expected = rr.score("capital of France", docs)
    encoder.model.train()
    rr.head.train()
    try:
        assert torch.equal(rr.score("capital of France", docs), expected)
        assert torch.equal(rr.score("capital of France", docs), expected)
        assert encoder.model.training and rr.head.training
    finally:
        encoder.model.eval()
        rr.head.eval()


def test_a_save_whose_backbone_moved_loads_with_an_encoder_of_the_new_folder(
    encoder: SentenceTransformerEncoder, minilm_path: str, tmp_path: Path
) -> None:
    """The constructor's check of the encoder's model refused load(encoder=...) of a save whose
    backbone folder had moved, with no way to pass the new folder (review): load takes the
    encoder's folder as the backbone and a later save records it."""
    import shutil

    first, moved = tmp_path / "bert_a", tmp_path / "bert_b"
    shutil.copytree(minilm_path, first)
    length = encoder.max_seq_length
    rr = MaxSimReranker(MaxSimConfig(backbone=str(first), max_seq_length=length),
                        encoder=SentenceTransformerEncoder(str(first), device="cpu", max_seq_length=length))
    folder = rr.save(tmp_path / "rr")
    first.rename(moved)
    again = MaxSimReranker.load(folder, encoder=SentenceTransformerEncoder(str(moved), device="cpu", max_seq_length=length))
    assert again.config.backbone == str(moved)
    docs = ["Paris is the capital of France.", "Bananas are yellow."]
    assert torch.allclose(again.score("capital of France", docs), rr.score("capital of France", docs), atol=1e-5)
    assert MaxSimReranker.load(again.save(tmp_path / "rr2"), device="cpu").config.backbone == str(moved)
    # a backbone still in place is not replaced by an encoder of another model (review)
    plain = MaxSimReranker(MaxSimConfig(max_seq_length=length), encoder=encoder).save(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"the encoder's model .*bert_b.* is not config.backbone \(None"):
        MaxSimReranker.load(plain, encoder=SentenceTransformerEncoder(str(moved), device="cpu", max_seq_length=length))
