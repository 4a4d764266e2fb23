"""Saved rerankers whose files were damaged or hand-edited: a ValueError naming the file.

The Gumbel reranker's ``tokenizer/`` without ``tokenizer.json`` loaded as a tokenizer of 5
special tokens (every word ``[UNK]``); integer weights were cast silently into a float scorer or
head; a MaxSim save whose ``trained_layers`` was edited from 1 to 0 dropped its fine-tuned layer,
and any stray tensor was accepted (review). Saves are tiny (2-layer, 32-d BERTs with MiniLM's
tokenizer), built once per module and copied per test.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _gumbel_helpers import tiny_scorer
from safetensors.torch import load_file, save_file

from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder
from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERY = "which city is the capital of france?"
DOCS = ["paris is the capital of france.", "bananas are yellow.", "lyon is a city in france."]


def _edit_json(file: Path, **changes: object) -> None:
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


def _edit_weights(file: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(str(file))
    change(tensors)
    save_file(tensors, str(file))


# ---------------------------------------------------------------------------------------- Gumbel
@pytest.fixture(scope="module")
def gumbel_saved(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    rr = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu")
    folder = rr.save_pretrained(tmp_path_factory.mktemp("gumbel") / "init")
    assert sorted(p.name for p in (folder / "tokenizer").iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    return folder, rr.score(QUERY, DOCS)


@pytest.fixture
def gumbel_copy(gumbel_saved: tuple[Path, torch.Tensor], tmp_path: Path) -> Path:
    return Path(shutil.copytree(gumbel_saved[0], tmp_path / "init"))


def _integer_layer_norm(t: dict[str, torch.Tensor]) -> None:
    key = "backbone.embeddings.LayerNorm.weight"
    t[key] = t[key].round().to(torch.int64)


GUMBEL_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "no_tokenizer_json": (lambda f: (f / "tokenizer" / "tokenizer.json").unlink(),
                          r"tokenizer: its tokenizer holds only 5 token\(s\), its special ones \(tokenizer\.json"),
    "vocab_size_lowered": (lambda f: _edit_json(f / "backbone" / "config.json", vocab_size=1000),
                           r"tokenizer: its tokenizer holds 30522 tokens, more than the model's vocab_size 1000"),
    "integer_weight": (lambda f: _edit_weights(f / "model.safetensors", _integer_layer_norm),
                       r"model\.safetensors: backbone\.embeddings\.LayerNorm\.weight holds torch\.int64 values "
                       r"where the model's are torch\.float32"),
}


@pytest.mark.parametrize("damage", sorted(GUMBEL_DAMAGE))
def test_a_damaged_gumbel_save_is_refused_naming_the_file(gumbel_copy: Path, damage: str) -> None:
    tamper, match = GUMBEL_DAMAGE[damage]
    tamper(gumbel_copy)
    with pytest.raises(ValueError, match=match):
        GumbelReranker.from_pretrained(gumbel_copy, device="cpu")


def test_an_untouched_gumbel_save_loads_and_scores_the_same(gumbel_saved: tuple[Path, torch.Tensor]) -> None:
    folder, before = gumbel_saved
    again = GumbelReranker.from_pretrained(folder, device="cpu")
    torch.testing.assert_close(again.score(QUERY, DOCS), before, atol=1e-6, rtol=1e-6)
    tok = again.scorer.tokenizer
    assert tok.unk_token_id not in tok(QUERY)["input_ids"]


def test_half_precision_gumbel_weights_are_cast_and_load(gumbel_copy: Path, gumbel_saved: tuple[Path, torch.Tensor]) -> None:
    _edit_weights(gumbel_copy / "model.safetensors", lambda t: t.update({k: v.half() for k, v in t.items()}))
    again = GumbelReranker.from_pretrained(gumbel_copy, device="cpu")
    assert all(p.dtype == torch.float32 for p in again.scorer.parameters())
    torch.testing.assert_close(again.score(QUERY, DOCS), gumbel_saved[1], atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------------------------------- MaxSim
@pytest.fixture(scope="module")
def maxsim_saved(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor, Path]:
    """A MaxSim save with one trained backbone layer over a tiny sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("maxsim")
    tok = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(root / "hf")
    tok.save_pretrained(root / "hf")
    SentenceTransformer(str(root / "hf"), device="cpu").save(str(root / "st"))
    cfg = MaxSimConfig(backbone=str(root / "st"), projection_dim=8, token_dim=32, max_seq_length=32, trained_layers=1)
    rr = MaxSimReranker(cfg, device="cpu")
    with torch.no_grad():
        for p in rr.trainable_backbone_parameters(1).values():
            p.add_(0.05)  # the trained layer differs from the backbone folder's
    folder = rr.save(root / "m")
    return folder, rr.score(QUERY, DOCS), root / "st"


@pytest.fixture
def maxsim_copy(maxsim_saved: tuple[Path, torch.Tensor, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(maxsim_saved[0], tmp_path / "m"))


def _stray(t: dict[str, torch.Tensor]) -> None:
    t["backbone.pooler.dense.bias"] = torch.zeros(32)


def _integer_head(t: dict[str, torch.Tensor]) -> None:
    t["head.proj.weight"] = (t["head.proj.weight"] * 100).to(torch.int32)


MAXSIM_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "trained_layers_edited_to_0": (lambda f: _edit_json(f / "config.json", trained_layers=0),
                                   r"model\.safetensors holds tensors its config\.json \(trained_layers 0\) does not "
                                   r"use, e.g. backbone\.layer\.1\."),
    "stray_tensor": (lambda f: _edit_weights(f / "model.safetensors", _stray),
                     r"model\.safetensors holds tensors its config\.json \(trained_layers 1\) does not use, "
                     r"e.g. backbone\.pooler\.dense\.bias \(1 in all\)"),
    # built at the config's size before the shapes were compared: 10**12 failed in the allocator (review)
    "huge_projection_dim": (lambda f: _edit_json(f / "config.json", projection_dim=10**12),
                            r"model\.safetensors does not match its config: head\.proj\.weight is \(8, 32\), "
                            r"config\.json has projection_dim 1000000000000"),
    "integer_head": (lambda f: _edit_weights(f / "model.safetensors", _integer_head),
                     r"model\.safetensors: head\.proj\.weight holds torch\.int32 values where the model's are "
                     r"torch\.float32"),
}


@pytest.mark.parametrize("damage", sorted(MAXSIM_DAMAGE))
def test_a_damaged_maxsim_save_is_refused_before_touching_the_encoder(
    maxsim_copy: Path, maxsim_saved: tuple[Path, torch.Tensor, Path], damage: str
) -> None:
    tamper, match = MAXSIM_DAMAGE[damage]
    tamper(maxsim_copy)
    encoder = SentenceTransformerEncoder(maxsim_saved[2], device="cpu", max_seq_length=32)
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        MaxSimReranker.load(maxsim_copy, encoder=encoder, device="cpu")
    after = encoder.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_an_untouched_maxsim_save_loads_and_scores_the_same(maxsim_saved: tuple[Path, torch.Tensor, Path]) -> None:
    folder, before, _ = maxsim_saved
    again = MaxSimReranker.load(folder, device="cpu")
    torch.testing.assert_close(again.score(QUERY, DOCS), before, atol=1e-6, rtol=1e-6)
