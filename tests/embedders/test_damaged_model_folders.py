"""A Gaussian embedder save whose ``backbone/`` folder is damaged: a ValueError naming the file.

transformers 5 only logs a LOAD REPORT for weights it fills at random or drops, builds a
tokenizer of 5 special tokens when ``tokenizer.json`` is missing (every word ``[UNK]``, every text
the same vector), and sentence-transformers builds another pipeline (mean pooling, no Normalize)
when ``modules.json`` is missing: each of these loaded silently (review). The saves are tiny (a
2-layer, 32-d BERT with MiniLM's tokenizer), built once per module and copied per test.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder
from rag_relax_plugins.embedders.sentence_transformer import default_model_path, load_local_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["a cat sat on the mat", "stock markets fell sharply", "the dog barked"]


def tiny_sentence_transformer(minilm_path: str, folder: Path) -> Path:
    """A random 2-layer, 32-d BERT with MiniLM's tokenizer, saved as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder / "hf")
    tok.save_pretrained(folder / "hf")
    SentenceTransformer(str(folder / "hf"), device="cpu").save(str(folder / "st"))  # Transformer + mean pooling
    return folder / "st"


@pytest.fixture(scope="module")
def saved(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    """A Gaussian embedder save with its own ``backbone/`` and the embeddings of :data:`TEXTS`."""
    root = tmp_path_factory.mktemp("damaged")
    backbone = tiny_sentence_transformer(minilm_path, root)
    torch.manual_seed(1)
    model = GaussianEmbedder(GaussianConfig(backbone=str(backbone), output_dim=8, dropout=0.0,
                                            head_init="random"), device="cpu")
    folder = model.save(root / "g")
    assert (folder / "backbone" / "modules.json").is_file() and not (folder / "backbone" / "vocab.txt").exists()
    return folder, model.encode(TEXTS)


@pytest.fixture
def copy(saved: tuple[Path, torch.Tensor], tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved[0], tmp_path / "g"))


def _edit_config(key: str, change: Callable[[int], int]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        file = folder / "backbone" / "config.json"
        cfg = json.loads(file.read_text())
        cfg[key] = change(cfg[key])
        file.write_text(json.dumps(cfg))
    return edit


def _edit_weights(file: str, change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        tensors = load_file(str(folder / file))
        change(tensors)
        save_file(tensors, str(folder / file))
    return edit


def _drop_one(t: dict[str, torch.Tensor]) -> None:
    del t["embeddings.token_type_embeddings.weight"]


def _add_stray(t: dict[str, torch.Tensor]) -> None:
    t["classifier.weight"] = torch.zeros(2, 32)


def _integer_layer_norm(t: dict[str, torch.Tensor]) -> None:
    t["embeddings.LayerNorm.weight"] = t["embeddings.LayerNorm.weight"].round().to(torch.int64)


def _integer_head(t: dict[str, torch.Tensor]) -> None:
    key = sorted(t)[0]
    t[key] = (t[key] * 100).to(torch.int32)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "no_tokenizer_json": (lambda f: (f / "backbone" / "tokenizer.json").unlink(),
                          r"backbone: its tokenizer holds only 5 token\(s\), its special ones \(tokenizer\.json missing"),
    "weight_dropped": (_edit_weights("backbone/model.safetensors", _drop_one),
                       r"backbone/model\.safetensors: does not hold the weights .*missing "
                       r"\['embeddings\.token_type_embeddings\.weight'\]"),
    "stray_weight": (_edit_weights("backbone/model.safetensors", _add_stray),
                     r"backbone/model\.safetensors: does not hold the weights .*unexpected \['classifier\.weight'\]"),
    "layers_raised": (_edit_config("num_hidden_layers", lambda n: n + 1),
                      r"backbone/model\.safetensors: does not hold the weights .*missing \['encoder\.layer\.2\."),
    "layers_lowered": (_edit_config("num_hidden_layers", lambda n: n - 1),
                       r"backbone/model\.safetensors: does not hold the weights .*unexpected \['encoder\.layer\.1\."),
    "no_modules_json": (lambda f: (f / "backbone" / "modules.json").unlink(),
                        r"backbone: no modules\.json"),
    "no_pooling_folder": (lambda f: shutil.rmtree(f / "backbone" / "1_Pooling"),
                          r"backbone: not a loadable sentence-transformers model \(.*embedding_dimension"),
    "integer_backbone_weight": (_edit_weights("backbone/model.safetensors", _integer_layer_norm),
                                r"backbone/model\.safetensors: embeddings\.LayerNorm\.weight holds I64 values"),
    "integer_head_weight": (_edit_weights("head.safetensors", _integer_head),
                            r"head\.safetensors: .* holds torch\.int32 values where the model's are torch\.float32"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_saved_backbone_is_refused_naming_the_file(copy: Path, damage: str) -> None:
    tamper, match = DAMAGE[damage]
    tamper(copy)
    with pytest.raises(ValueError, match=match):
        GaussianEmbedder.load(copy, device="cpu")


def test_an_untouched_save_loads_and_scores_the_same(saved: tuple[Path, torch.Tensor]) -> None:
    folder, before = saved
    again = GaussianEmbedder.load(folder, device="cpu")
    torch.testing.assert_close(again.encode(TEXTS), before, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(before[0], before[1])  # the tokenizer reads words, not [UNK]s


def test_a_save_with_legacy_layer_norm_names_loads(copy: Path, saved: tuple[Path, torch.Tensor]) -> None:
    # transformers 5.0-5.5 save BERT's LayerNorm weights as gamma / beta (and rename them on load):
    # the weights check refused every save such a version wrote (minimum-versions review)
    def legacy(t: dict[str, torch.Tensor]) -> None:
        for k in [k for k in t if "LayerNorm." in k]:
            t[k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")] = t.pop(k)

    _edit_weights("backbone/model.safetensors", legacy)(copy)
    torch.testing.assert_close(GaussianEmbedder.load(copy, device="cpu").encode(TEXTS), saved[1], atol=1e-6, rtol=1e-6)


def test_a_half_precision_head_is_cast_and_loads(copy: Path, saved: tuple[Path, torch.Tensor]) -> None:
    _edit_weights("head.safetensors", lambda t: t.update({k: v.half() for k, v in t.items()}))(copy)
    again = GaussianEmbedder.load(copy, device="cpu")
    assert all(p.dtype == torch.float32 for p in again.head.parameters())
    torch.testing.assert_close(again.encode(TEXTS), saved[1], atol=1e-2, rtol=1e-2)


def test_check_tokenizer_refuses_more_tokens_than_the_vocabulary(minilm_path: str) -> None:
    from transformers import AutoTokenizer

    from rag_relax_plugins.embedders._saved_model_checks import check_tokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    check_tokenizer(tok, len(tok), "m")
    with pytest.raises(ValueError, match=r"^m: its tokenizer holds 30522 tokens, more than the model's vocab_size 100"):
        check_tokenizer(tok, 100, "m")


def test_the_offline_minilm_package_still_loads(minilm_path: str) -> None:
    """The package's model.safetensors holds the buffer embeddings.position_ids: allowed."""
    assert default_model_path() == Path(minilm_path)
    model = load_local_model(Path(minilm_path), "cpu")
    ids = model.tokenizer("a cat")["input_ids"]
    assert model.tokenizer.unk_token_id not in ids and len(ids) == 4
    assert tuple(model.encode(["a cat"], convert_to_tensor=True).shape) == (1, 384)


def test_a_task_model_checkpoint_without_pooler_still_loads(minilm_path: str, tmp_path: Path) -> None:
    """A local folder of a BertForMaskedLM (keys under ``bert.``, a ``cls.*`` head, no pooler):
    transformers drops the head by design and sentence-transformers never uses the pooler."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(minilm_path)
    BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = load_local_model(tmp_path, "cpu")
    assert tuple(model.encode(TEXTS, convert_to_tensor=True).shape) == (3, 32)


def test_a_third_party_folder_with_legacy_layer_norm_names_loads_as_transformers_reads_it(
    minilm_path: str, tmp_path: Path
) -> None:
    # bert-base-uncased's own file still names LayerNorm weights gamma / beta, which transformers
    # renames on load: a weights check of plain key names refused it (diff review); only saves
    # of this package are checked against their files
    import shutil

    from safetensors.torch import load_file, save_file

    from rag_relax_plugins.embedders.sentence_transformer import load_local_model

    folder = tmp_path / "legacy"
    shutil.copytree(minilm_path, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in tensors.items()}
    assert renamed.keys() != tensors.keys()
    save_file(renamed, str(folder / "model.safetensors"), metadata={"format": "pt"})
    texts = ["Paris is the capital of France.", "bananas"]
    want = load_local_model(Path(minilm_path), "cpu").encode(texts, convert_to_tensor=True)
    got = load_local_model(folder, "cpu").encode(texts, convert_to_tensor=True)
    assert torch.allclose(got, want, atol=1e-6)
