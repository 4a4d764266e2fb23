"""Documented behaviour of the rerankers and their adapters that hand mutants changed unnoticed
(review 2026-12-05): default top_n, ties in input order, tau and kappa, max_length, seeded head."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from _gumbel_helpers import tiny_scorer

from rag_relax_plugins.core.gumbel import relaxed_topk
from rag_relax_plugins.rerankers.base import BaseReranker
from rag_relax_plugins.rerankers.gumbel import GumbelReranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Position(BaseReranker):
    """Later documents score higher."""

    def score(self, query: str, documents: Sequence[str]) -> torch.Tensor:
        return torch.arange(len(documents), dtype=torch.float32)


class Alternating(BaseReranker):
    """Scores 1, 0, 1, 0 ... by position: many exact ties."""

    def score(self, query: str, documents: Sequence[str]) -> torch.Tensor:
        return torch.tensor([float(i % 2 == 0) for i in range(len(documents))])


def test_ties_keep_input_order_with_many_candidates() -> None:
    # "Candidates best first (ties keep input order)": an unstable sort reorders ties from ~17 on
    docs = [f"doc {i}" for i in range(40)]
    got = [r.index for r in Alternating().rerank("q", docs)]
    assert got == list(range(0, 40, 2)) + list(range(1, 40, 2))
    assert [r.index for r in Alternating().rerank("q", docs, top_n=25)] == got[:25]


def test_langchain_compressor_keeps_three_by_default() -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from rag_relax_plugins.langchain.compressors import RerankerCompressor

    comp = RerankerCompressor(reranker=Position())
    assert comp.top_n == 3
    out = comp.compress_documents([Document(page_content=f"d{i}") for i in range(6)], "q")
    assert [d.page_content for d in out] == ["d5", "d4", "d3"]


def test_llama_index_postprocessor_keeps_three_by_default() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from rag_relax_plugins.llama_index.postprocessors import RerankerPostprocessor

    pp = RerankerPostprocessor(reranker=Position())
    assert pp.top_n == 3
    nodes = [NodeWithScore(node=TextNode(text=f"d{i}"), score=0.0) for i in range(6)]
    out = pp.postprocess_nodes(nodes, query_str="q")
    assert [n.node.get_content() for n in out] == ["d5", "d4", "d3"]


@pytest.mark.parametrize("mode", ["l2x", "subset"])
def test_training_mask_uses_the_rerankers_tau_and_kappa(minilm_path: str, mode: str) -> None:
    rr = GumbelReranker(tiny_scorer(minilm_path), k=2, mode=mode, tau=0.5, kappa=3.0, device="cpu")
    scores = torch.tensor([0.3, -0.2, 0.9, 0.1, -1.0])
    got = rr.training_mask(scores, generator=torch.Generator().manual_seed(7))
    want = relaxed_topk(scores, 2, mode=mode, tau=0.5, kappa=3.0, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(got, want)
    swapped = relaxed_topk(scores, 2, mode=mode, tau=3.0, kappa=0.5, generator=torch.Generator().manual_seed(7))
    assert not torch.allclose(got, swapped)  # tau and kappa are not interchangeable here


def test_cross_encoder_truncates_pairs_at_its_max_length(minilm_path: str) -> None:
    # the tiny scorer has 128 positions and max_length=64: a long pair is cut to 64 word pieces
    rr = GumbelReranker(tiny_scorer(minilm_path), device="cpu")
    long = "apples grow on trees in the orchard " * 40
    scores = rr.score("what grows on trees?", [long, long + " and stones lie on the ground " * 20])
    assert torch.isfinite(scores).all()
    assert torch.allclose(scores[0], scores[1])  # both cut to the same first 64 word pieces
    assert rr.scorer._tok(["q"], [long])["input_ids"].shape[1] == 64


def test_head_initialisation_follows_the_seed_not_the_global_rng(minilm_path: str) -> None:
    from transformers import AutoTokenizer, BertConfig

    from rag_relax_plugins.rerankers.cross_encoder import CrossEncoderScorer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)

    def head(seed: int, global_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        return CrossEncoderScorer(None, max_length=64, seed=seed, _config=cfg, _tokenizer=tok).head.weight.detach()

    assert torch.equal(head(1, 10), head(1, 20))  # "seed: seed of the head initialisation"
    assert not torch.equal(head(1, 10), head(2, 10))
