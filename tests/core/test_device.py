from __future__ import annotations

import pytest
import torch

from rag_relax_plugins.core.device import autocast, resolve_device, supports_dtype


def test_resolve_default_prefers_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if hasattr(torch.backends, "mps"):
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")


def test_resolve_explicit():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_resolve_rejects_unknown_and_unavailable(monkeypatch):
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu-ish")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_autocast_is_noop_on_cpu():
    a = torch.randn(4, 4)
    with autocast("cpu", "bf16"):
        out = a @ a
    assert out.dtype == torch.float32
    assert not supports_dtype(torch.device("cpu"), torch.bfloat16)


def test_autocast_rejects_unknown_dtype():
    with pytest.raises(ValueError, match="dtype"), autocast("cpu", "fp8"):
        pass


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autocast_cuda_bf16():
    a = torch.randn(8, 8, device="cuda")
    with autocast("cuda", "bf16"):
        out = a @ a
    assert out.dtype == torch.bfloat16
