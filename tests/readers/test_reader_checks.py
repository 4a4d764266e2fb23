"""What CausalLMReader refuses or reports: a model that is not a causal LM with a KV cache (named, and
``rag-relax train-reranker --reader`` exits 2 with nothing written), a passed reader whose layout
settings differ from the run's config, and documents ``generate`` cuts to ``doc_tokens``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rerankers"))
from _gumbel_helpers import example, grerank_config, tiny_scorer, write_hotpot

Q = "What is the capital of France?"
LONG = "The Moon orbits Earth once every 27 days, and its far side was first photographed in 1959 by Luna 3."

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_llama(folder: Path, minilm_path: str) -> Path:
    """A 1-layer random Llama with MiniLM's tokenizer: a causal LM with a KV cache, in a second."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=30522, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(str(folder))
    transformers.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(str(folder))
    return folder


def test_an_encoder_folder_is_refused_by_name(minilm_path: str, tmp_path: Path) -> None:
    """MiniLM loaded as a causal LM (BertLMHeadModel) returns no cache: the first training step
    failed with AttributeError 'NoneType' object has no attribute 'layers'."""
    from rag_relax_plugins.readers.causal_lm import CausalLMReader

    with pytest.raises(ValueError, match=r"is not a decoder-only causal LM .*model type 'bert'") as err:
        CausalLMReader(minilm_path, device="cpu")
    assert minilm_path in str(err.value)
    llama = CausalLMReader(_tiny_llama(tmp_path / "llama", minilm_path), device="cpu", doc_tokens=4)
    lay = llama.layout(Q, ["Paris.", "Moon."], "Paris")
    assert llama.layout_nll(lay, torch.ones(2), document_states=llama.encode_documents(lay)).shape == (1,)


def test_cli_reader_of_an_encoder_exits_2_and_writes_nothing(
    minilm_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rag_relax_plugins.cli import main

    out = tmp_path / "run"
    argv = ["train-reranker", "-o", str(out), "--data", str(write_hotpot(tmp_path / "d.jsonl")), "--train-size",
            "1", "--reader", minilm_path, "--scorer-max-length", "32", "--device", "cpu", "--no-progress"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rag-relax")]
    assert len(err) == 1 and err[0].startswith("rag-relax train-reranker: error: ")
    assert "is not a decoder-only causal LM" in err[0]
    assert not out.exists()


def test_a_reader_with_other_layout_settings_than_the_config_is_refused(
    reader: Any, minilm_path: str, tmp_path: Path
) -> None:
    """The reader built the layouts while train_config.json recorded cfg's variant and doc_tokens;
    with cache_reader_states it failed part-way, after train_config.json was written."""
    from rag_relax_plugins.rerankers.gumbel import GumbelReranker
    from rag_relax_plugins.training.grerank import train_grerank

    out = tmp_path / "run"
    cfg = grerank_config(out, k=1, max_steps=1, cache_reader_states=True)  # doc_tokens 48, the reader's 8
    r = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu")
    with pytest.raises(ValueError, match=r"doc_tokens \(reader 8, cfg 48\)"):
        train_grerank(cfg, examples=[example(0, n=3)], reranker=r, reader=reader)
    assert not out.exists()


def test_generate_warns_when_it_cuts_documents(reader: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert len(reader.tokenizer(LONG)["input_ids"]) > reader.doc_tokens == 8
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.readers.causal_lm"):
        reader.generate(Q, ["Paris.", LONG, LONG], max_new_tokens=1)
    cut = [r for r in caplog.records if "cut" in r.getMessage()]
    assert len(cut) == 1  # once per call
    assert "2 of 3 documents cut to the reader's doc_tokens=8 tokens" in cut[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag_relax_plugins.readers.causal_lm"):
        reader.generate(Q, ["Paris is in France."], max_new_tokens=1)
    assert not [r for r in caplog.records if "cut" in r.getMessage()]
    assert "doc_tokens" in (type(reader).generate.__doc__ or "")


def test_generate_refuses_none_for_documents_and_build_layout_a_float_doc_span(reader: Any) -> None:
    """generate(q, None) ran with no document, silently; build_layout(doc_span=20.0) raised
    "'float' object cannot be interpreted as an integer" (review)."""
    from rag_relax_plugins.readers.dma import build_layout

    with pytest.raises(TypeError, match="documents must be a sequence of str"):
        reader.generate(Q, None, max_new_tokens=1)
    assert isinstance(reader.generate(Q, [], max_new_tokens=1), str)  # no documents, said so
    with pytest.raises(ValueError, match=r"doc_span must be an int >= 1, got 20\.0"):
        build_layout(reader.tokenizer, Q, ["Paris."], "x", doc_span=20.0)


@pytest.mark.parametrize("cache", [True, False])
def test_a_mask_without_rows_or_not_a_tensor_is_refused_before_the_model_runs(
    minilm_path: str, tmp_path: Path, cache: bool
) -> None:
    """A (0, N) mask failed inside the model ("cannot reshape tensor of 0 elements"), a list with
    "'list' object has no attribute 'dim'", and a 3-D mask was named by its unsqueezed shape (review)."""
    from rag_relax_plugins.readers.causal_lm import CausalLMReader

    llama = CausalLMReader(_tiny_llama(tmp_path / "llama", minilm_path), device="cpu", doc_tokens=4)
    lay = llama.layout(Q, ["Paris.", "Moon."], "Paris")
    with pytest.raises(ValueError, match=r"B >= 1 and N = 2 documents, got shape \(0, 2\)"):
        llama.layout_nll(lay, torch.ones(0, 2), cache_documents=cache)
    with pytest.raises(TypeError, match=r"doc_mask must be a torch\.Tensor, got list"):
        llama.layout_nll(lay, [1.0, 1.0], cache_documents=cache)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1-D or 2-D, got shape \(1, 1, 2\)"):
        llama.layout_nll(lay, torch.ones(1, 1, 2), cache_documents=cache)
    with pytest.raises(ValueError, match=r"got shape \(0, 2\)"):
        llama.layout_logits(lay, torch.ones(0, 2))
    assert llama.layout_nll(lay, torch.ones(2, 2), cache_documents=cache).shape == (2,)
