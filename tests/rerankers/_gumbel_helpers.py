"""Small test doubles for the Gumbel reranker tests: a tiny random BERT scorer and a fake reader."""

from __future__ import annotations

from typing import Any

import torch

from rag_relax_plugins.datasets.hotpotqa import HotpotExample
from rag_relax_plugins.rerankers.cross_encoder import (
    BiEncoderScorer,
    CrossEncoderScorer,
    PairScorer,
)


def tiny_scorer(minilm_path: str, kind: str = "cross", seed: int = 0) -> PairScorer:
    """A 2-layer, 32-d BERT with MiniLM's tokenizer (random weights, fast)."""
    from transformers import AutoTokenizer, BertConfig

    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    cls = CrossEncoderScorer if kind == "cross" else BiEncoderScorer
    return cls(None, max_length=64, seed=seed, _config=cfg, _tokenizer=tok)


def example(i: int, n: int = 4) -> HotpotExample:
    """A synthetic HotpotQA row: paragraph 0 is gold and mentions the answer."""
    paras = tuple(
        (f"T{i}-{j}", (f"paragraph {j} of question {i} about {'apples' if j == 0 else 'stones'}.",))
        for j in range(n)
    )
    return HotpotExample(
        id=f"x{i}",
        question=f"what fruit is in question {i}?",
        answer="apples",
        type="bridge" if i % 2 else "comparison",
        level="easy",
        paragraphs=paras,
        supporting_facts=((f"T{i}-0", 0),),
    )


class FakeReader:
    """Stands in for CausalLMReader: NLL = -log(mean mask on gold paragraph 0 + eps); has a frozen param."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.frozen = torch.nn.Parameter(torch.ones(1), requires_grad=False)

    def layout(self, question: str, documents: list[str], answer: str) -> Any:
        return len(documents)

    def layout_nll(self, layout: Any, doc_mask: torch.Tensor) -> torch.Tensor:
        m = doc_mask if doc_mask.dim() == 2 else doc_mask.unsqueeze(0)
        return -torch.log(m[:, 0] / m.sum(dim=1).clamp_min(1e-6) + 1e-6) * self.frozen


def grerank_config(output_dir: Any, **kw: object) -> Any:
    """A small, fast G-Rerank config for tests (CPU, no progress bar, one question per step)."""
    from rag_relax_plugins.training.grerank import GRerankConfig

    base: dict[str, object] = dict(
        output_dir=str(output_dir),
        epochs=1,
        grad_accum_steps=1,
        device="cpu",
        show_progress=False,
        head_learning_rate=0.05,
        learning_rate=1e-3,
        save_every_steps=2,
    )
    base.update(kw)
    return GRerankConfig(**base)  # type: ignore[arg-type]


def write_hotpot(path: Any, rows: int = 2) -> Any:
    """A HotpotQA distractor JSONL file of ``rows`` synthetic rows (as :func:`example` builds them)."""
    import json
    from pathlib import Path

    lines = []
    for i in range(rows):
        ex = example(i)
        lines.append(json.dumps({
            "_id": ex.id, "question": ex.question, "answer": ex.answer, "type": ex.type, "level": ex.level,
            "context": [[title, list(sents)] for title, sents in ex.paragraphs],
            "supporting_facts": [list(f) for f in ex.supporting_facts],
        }))
    out = Path(path)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
