"""The Gaussian embedder's framework adapters embed in eval mode, so that concurrent async calls
agree with the sync ones (dropout > 0, hashing backbone: no model download)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.langchain import GaussianEmbeddings
from rag_relax_plugins.llama_index import GaussianEmbedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [f"text number {i} " * 8 for i in range(24)]


def _saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = GaussianEmbedder(GaussianConfig(backbone="hashing:256", output_dim=32, head_init="random", dropout=0.3),
                             device="cpu")
    model.save(tmp_path / "g")
    return tmp_path / "g"


def test_load_returns_an_eval_mode_model(tmp_path: Path) -> None:
    assert not GaussianEmbedder.load(_saved(tmp_path), device="cpu").training  # was train mode


def test_llamaindex_async_batches_equal_the_sync_embeddings(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    model = GaussianEmbedder.load(folder, device="cpu").train()  # a model left in train mode
    emb = GaussianEmbedding(model=model, device="cpu", embed_batch_size=4)
    assert not model.training  # the adapter put it in eval mode once
    sync = torch.tensor(emb.get_text_embedding_batch(TEXTS))
    # LlamaIndex runs the 6 batches concurrently, each encode in its own worker thread
    asy = torch.tensor(asyncio.run(emb.aget_text_embedding_batch(TEXTS)))
    assert torch.equal(asy, sync) and not model.training


def test_langchain_concurrent_async_calls_equal_the_sync_embeddings(tmp_path: Path) -> None:
    emb = GaussianEmbeddings(model_path=_saved(tmp_path), device="cpu")
    sync = emb.embed_documents(TEXTS)

    async def run() -> list[list[list[float]]]:
        return list(await asyncio.gather(*(emb.aembed_documents(TEXTS) for _ in range(6))))

    assert all(out == sync for out in asyncio.run(run()))


def test_concurrent_encodes_of_a_training_model_keep_its_mode_and_no_dropout(tmp_path: Path) -> None:
    # a model served while being fine-tuned (train mode after the adapter's eval()): encode's own
    # eval()/train(was) of two threads interleaved, one encoded with dropout and the training
    # mode was lost (9 of 60 calls differed, 8 of 10 trials lost it; review 2026-12-05)
    from concurrent.futures import ThreadPoolExecutor

    model = GaussianEmbedder.load(_saved(tmp_path), device="cpu")
    want = model.encode(TEXTS)
    model.train()
    with ThreadPoolExecutor(6) as pool:
        for _ in range(5):
            outs = list(pool.map(lambda _: model.encode(TEXTS, batch_size=4), range(12)))
            assert all(torch.equal(o, want) for o in outs)
            assert model.training and all(m.training for m in model.head.modules())
