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


def test_fork_device_rngs_restores_the_cpu_generator() -> None:
    from rag_relax_plugins.core.device import fork_device_rngs, seed_device_rngs

    torch.manual_seed(123)
    before = torch.get_rng_state()
    with fork_device_rngs(torch.device("cpu")):
        seed_device_rngs(7, torch.device("cpu"))
        torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)


def test_fork_device_rngs_restores_the_mps_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.random.fork_rng restores CUDA generators only: an MPS run reseeded the caller's MPS
    generator and left it so. No MPS here: its generator is stood in for by a fake."""
    from rag_relax_plugins.core.device import fork_device_rngs, seed_device_rngs

    state = {"rng": torch.tensor([1, 2, 3], dtype=torch.uint8)}
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda *a, **k: state["rng"].clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda s, *a, **k: state.update(rng=s.clone()))
    monkeypatch.setattr(torch.mps, "manual_seed", lambda seed: state.update(rng=torch.tensor([seed], dtype=torch.uint8)))
    mps = torch.device("mps")
    with fork_device_rngs(mps):
        seed_device_rngs(9, mps)
        assert state["rng"].tolist() == [9]
    assert state["rng"].tolist() == [1, 2, 3]
    with pytest.raises(RuntimeError, match="boom"), fork_device_rngs(mps):  # restored on an error too
        seed_device_rngs(4, mps)
        raise RuntimeError("boom")
    assert state["rng"].tolist() == [1, 2, 3]


def test_resolve_rejects_a_cuda_index_beyond_the_visible_devices(monkeypatch):
    """The docstring promises a ValueError for an unavailable device; "cuda:3" on a one-GPU machine
    was returned as is and failed later with "invalid device ordinal" (review 2026-12)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda")
    for spec in ("cuda:1", "cuda:3", torch.device("cuda", 7)):
        with pytest.raises(ValueError, match="only 1 CUDA device"):
            resolve_device(spec)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_device("cuda:3") == torch.device("cuda", 3)


def test_seeded_rngs_seeds_inside_and_restores_after() -> None:
    from rag_relax_plugins.core.device import seeded_rngs

    torch.manual_seed(123)
    before = torch.get_rng_state()
    with seeded_rngs(7, torch.device("cpu")):
        inside = torch.rand(3)
    assert torch.equal(inside, torch.rand(3, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(torch.get_rng_state(), before)


def test_grad_scaler_works_without_torch_amp_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.2 (allowed by torch>=2.2) has no torch.amp.GradScaler: both trainers built one on
    every device and failed with AttributeError there (review 2026-12-05)."""
    import warnings

    from rag_relax_plugins.core.device import grad_scaler

    scaler = grad_scaler("cpu", enabled=False)
    assert isinstance(scaler, torch.amp.GradScaler) and not scaler.is_enabled()
    monkeypatch.delattr(torch.amp, "GradScaler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.cuda.amp.GradScaler is deprecated on 2.13
        old = grad_scaler("cpu", enabled=False)
        assert isinstance(old, torch.cuda.amp.GradScaler) and not old.is_enabled()
        loss = torch.tensor(2.0, requires_grad=True)
        assert old.scale(loss) is loss  # disabled: a no-op, as on the CPU path of the trainers
