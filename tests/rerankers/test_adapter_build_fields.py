"""Reranker adapters (LangChain compressors, LlamaIndex postprocessors): numpy integers taken as
ints (a sweep's ``top_n=np.int64(3)`` was refused), and the fields read only to build the reranker
frozen (a later ``pp.batch_size = 4`` was accepted and never reached the reranker)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from rag_relax_plugins.rerankers.base import BaseReranker, check_top_n


class Custom(BaseReranker):
    """A user's reranker with an attribute named batch_size of its own meaning ("no batching")."""

    batch_size = 0

    def score(self, query, documents):  # type: ignore[no-untyped-def]
        import torch

        return torch.zeros(len(documents))


def _adapters():  # type: ignore[no-untyped-def]
    from rag_relax_plugins.langchain import MaxSimReranker
    from rag_relax_plugins.llama_index.postprocessors import MaxSimRerank

    return [MaxSimReranker, MaxSimRerank]


def test_check_top_n_takes_numpy_integers() -> None:
    assert check_top_n(np.int64(2)) == 2 and type(check_top_n(np.int32(2))) is int
    with pytest.raises(TypeError, match="top_n must be an int"):
        check_top_n(np.float64(2.0))
    with pytest.raises(TypeError, match="top_n must be an int"):
        check_top_n(True)


@pytest.mark.parametrize("index", [0, 1])
def test_numpy_integers_for_top_n_and_batch_size(index: int) -> None:
    adapter = _adapters()[index](top_n=np.int64(2), batch_size=np.int32(4))
    assert (adapter.top_n, adapter.batch_size) == (2, 4)
    assert type(adapter.top_n) is int and type(adapter.batch_size) is int
    assert adapter._reranker.batch_size == 4 and type(adapter._reranker.batch_size) is int
    with pytest.raises(ValidationError):
        _adapters()[index](batch_size=np.float64(4.0))


@pytest.mark.parametrize("index", [0, 1])
def test_build_fields_are_frozen_and_top_n_is_not(index: int) -> None:
    adapter = _adapters()[index](top_n=3, batch_size=8)
    for field, value in (("batch_size", 4), ("model_path", "/elsewhere"), ("device", "cpu")):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(adapter, field, value)
    assert adapter.batch_size == 8 and adapter._reranker.batch_size == 8
    adapter.top_n = 1  # read at every call: stays assignable
    assert adapter.top_n == 1


def test_gumbel_reranker_batch_size_takes_numpy_integers(minilm_path: str) -> None:
    from rag_relax_plugins.rerankers.gumbel import GumbelReranker

    r = GumbelReranker(backbone=minilm_path, max_length=16, batch_size=np.int64(3), device="cpu")
    assert r.batch_size == 3 and type(r.batch_size) is int
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        GumbelReranker(backbone=minilm_path, max_length=16, batch_size=0, device="cpu")


@pytest.mark.parametrize("index", [0, 1])
def test_an_adapter_given_a_reranker_reports_its_batch_size(index: int) -> None:
    """``batch_size=32`` (the field's default) beside a reranker batching 4 was accepted and
    reported in the field and ``to_dict()``, unused (review 2026-12-05)."""
    from rag_relax_plugins.embedders.hashing import HashingEncoder
    from rag_relax_plugins.rerankers.maxsim import MaxSimConfig
    from rag_relax_plugins.rerankers.maxsim import MaxSimReranker as MaxSimModel

    cls = _adapters()[index]
    model = MaxSimModel(MaxSimConfig(projection_dim=None, token_dim=64), encoder=HashingEncoder(dim=64, seed=1),
                        batch_size=4)
    adapter = cls(reranker=model)
    assert adapter.batch_size == 4
    assert cls(reranker=model, batch_size=4).batch_size == 4  # the reranker's own value, said again
    for other in (32, 8):
        with pytest.raises(ValueError, match=rf"batch_size={other} \(the reranker's own is 4\) only build a reranker"):
            cls(reranker=model, batch_size=other)
    if index == 1:  # LlamaIndex: to_dict() reports 4 and comes back with the same reranker
        cfg = adapter.to_dict()
        assert cfg["batch_size"] == 4 and cls.from_dict(cfg, reranker=model).batch_size == 4
        # ... or with another one, whose own batch size then stands (the dump's was not a choice)
        other = MaxSimModel(MaxSimConfig(projection_dim=None, token_dim=64), encoder=HashingEncoder(dim=64, seed=1),
                            batch_size=32)
        assert cls.from_dict(cfg, reranker=other).batch_size == 32
        assert cls.from_dict(cfg, reranker=Custom()).batch_size == 32  # no batch size of its own: the default
        assert cls.from_dict({k: v for k, v in cfg.items() if k != "reranker_instance"}, reranker=model).batch_size == 4


@pytest.mark.parametrize("index", [0, 1])
def test_a_custom_reranker_whose_batch_size_is_no_count_leaves_the_field_alone(index: int) -> None:
    adapter = _adapters()[index](reranker=Custom())
    assert adapter.batch_size == 32  # the field's default, not a ValidationError about batch_size=0
