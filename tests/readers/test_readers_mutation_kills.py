"""Documented behaviour of the reader that hand mutants changed unnoticed (review 2026-12-05): the
cut-document count, the answer NLL as a mean, max_new_tokens, eval mode, the cut warning."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rag_relax_plugins.readers.dma import build_layout

Q = "What is the capital of France?"
DOCS = ["Paris is the capital of France.", "The Moon orbits Earth.", "Berlin is in Germany."]


class CharTokenizer:
    """One token per character."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) % 251 for c in text]}


def test_cut_documents_counts_only_documents_longer_than_doc_tokens() -> None:
    # exactly doc_tokens tokens is not cut (generate would warn about a cut that did not happen)
    lay = build_layout(CharTokenizer(), "q?", ["abcde", "abcdef", "ab"], "ans", doc_tokens=5)
    assert lay.cut_documents == 1


@pytest.mark.models
@pytest.mark.usefixtures("one_torch_thread")
def test_answer_nll_is_the_mean_over_answer_tokens(reader: Any) -> None:
    answer = "Paris, the capital"
    lay = reader.layout(Q, DOCS, answer)
    a = lay.answer_start
    assert lay.length - a > 1  # several answer tokens: a sum and a mean differ
    with torch.inference_mode():
        nll = reader.answer_nll(Q, DOCS, answer, torch.ones(3))
        logits = reader.layout_logits(lay, torch.ones(3))[0].float()  # (T, V), no document cache
    logp = torch.log_softmax(logits[a - 1 : -1], dim=-1)  # row t predicts token t + 1
    ref = -logp.gather(-1, lay.input_ids[a:].view(-1, 1)).mean()
    assert nll.shape == (1,)
    assert torch.allclose(nll[0], ref, atol=1e-4)


@pytest.mark.models
@pytest.mark.usefixtures("one_torch_thread")
def test_generate_honours_max_new_tokens(reader: Any) -> None:
    one = reader.generate(Q, DOCS, max_new_tokens=1)
    assert len(reader.tokenizer(one, add_special_tokens=False)["input_ids"]) <= 1
    assert len(reader.generate(Q, DOCS, max_new_tokens=3)) >= len(one)


@pytest.mark.models
@pytest.mark.usefixtures("one_torch_thread")
def test_a_passed_model_in_train_mode_is_put_in_eval_mode(reader: Any) -> None:
    from rag_relax_plugins.readers.causal_lm import CausalLMReader

    model = reader.model
    try:
        model.train()  # e.g. fresh from a fine-tuning loop: dropout on (GPT-2 style models)
        again = CausalLMReader(model=model, tokenizer=reader.tokenizer, device="cpu", doc_tokens=8)
        assert not again.model.training
        assert not any(m.training for m in again.model.modules())
    finally:
        model.eval()


@pytest.mark.models
@pytest.mark.usefixtures("one_torch_thread")
def test_generate_warns_when_a_single_document_is_cut(reader: Any, caplog: pytest.LogCaptureFixture) -> None:
    # doc_tokens=8 (the fixture): the first document is cut, the second is not
    with caplog.at_level("WARNING", logger="rag_relax_plugins.readers.causal_lm"):
        reader.generate(Q, ["Paris is the capital and largest city of France, on the Seine.", "Paris."],
                        max_new_tokens=1)
    assert "1 of 2 documents cut" in caplog.text
