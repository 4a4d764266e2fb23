"""Device helpers: one place that chooses a device, and an autocast context that is a no-op on CPU.

Core ops never move tensors: they create new tensors on their inputs' device. Only constructors
(models, indexes, encoders) call :func:`resolve_device`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = [
    "autocast",
    "autocast_enabled",
    "fork_device_rngs",
    "fork_rng_devices",
    "grad_scaler",
    "precision_notes",
    "resolve_device",
    "seed_device_rngs",
    "seeded_rngs",
    "supports_dtype",
    "work_dtype",
]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`, or the best available one when ``None``.

    ``None`` resolves to CUDA, then Apple MPS, then CPU.

    Raises:
        ValueError: for an unknown or unsupported device (``"meta"``, ``"xpu"``), a CUDA/MPS
            device that is not available, or a CUDA index beyond ``torch.cuda.device_count()``
            (``"cuda:3"`` on a one-GPU machine).
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or None, got {device!r}") from exc
    if dev.type not in ("cpu", "cuda", "mps"):  # "meta", "xpu", ...: parsed by torch, not supported here
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or None, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(
            f"device {device!r} was requested but only {count} CUDA device(s) are visible "
            f"(indices 0 to {count - 1})"
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r} was requested but MPS is not available")
    return dev


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for the half-precision types (too coarse for logs of probabilities, and overflowing
    at scores over a small temperature), else ``dtype``: the precision core ops compute in."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` now (``torch.is_autocast_enabled`` takes the
    device type from torch 2.4 on; ``torch>=2.2`` is allowed)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: one function per device type
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return device_type == "cuda" and bool(torch.is_autocast_enabled())


def supports_dtype(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether mixed precision in ``dtype`` is worth enabling on ``device``."""
    if device.type == "cuda":
        return dtype == torch.float16 or (dtype == torch.bfloat16 and torch.cuda.is_bf16_supported())
    if device.type == "mps":
        return dtype == torch.float16
    return False


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: torch.dtype | str | None = None) -> Iterator[None]:
    """Mixed-precision context for ``device``; a no-op on CPU, or when ``dtype`` is ``None``.

    Args:
        device: the device the computation runs on.
        dtype: ``torch.bfloat16``/``torch.float16`` or ``"bf16"``/``"fp16"``; ``None`` disables it.
    """
    dev = torch.device(device)
    if isinstance(dtype, str):
        table = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": None, "none": None, "fp32": None}
        if dtype not in table:
            raise ValueError(f"dtype must be one of {sorted(table)}, got {dtype!r}")
        dtype = table[dtype]
    if dtype is None or dev.type == "cpu" or not supports_dtype(dev, dtype):
        yield
        return
    with torch.autocast(device_type=dev.type, dtype=dtype):
        yield


def seed_device_rngs(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and ``device``'s own (CUDA or MPS), and no other.

    ``torch.manual_seed`` would also reseed every CUDA device, which ``fork_rng(devices=[])``
    does not restore: a CPU run on a CUDA machine would change the caller's CUDA RNG.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def fork_rng_devices(device: torch.device) -> list[int]:
    """The CUDA device indices ``torch.random.fork_rng(devices=...)`` must restore for a run on
    ``device`` (none for CPU or MPS: only the CPU generator is forked then)."""
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []


@contextlib.contextmanager
def fork_device_rngs(device: torch.device) -> Iterator[None]:
    """Run the body with the CPU generator and ``device``'s own (that CUDA device, or MPS) forked:
    their states are restored on exit, so a run that seeds them (:func:`seed_device_rngs`) leaves
    the caller's as they were.

    ``torch.random.fork_rng`` restores CUDA devices only; the MPS generator is saved and restored
    here around it.
    """
    mps_state = torch.mps.get_rng_state() if device.type == "mps" else None
    try:
        with torch.random.fork_rng(devices=fork_rng_devices(device)):
            yield
    finally:
        if mps_state is not None:
            torch.mps.set_rng_state(mps_state)


@contextlib.contextmanager
def seeded_rngs(seed: int, device: torch.device) -> Iterator[None]:
    """Run the body with the CPU generator and ``device``'s own forked (:func:`fork_device_rngs`)
    and seeded with ``seed`` (:func:`seed_device_rngs`): a seeded run that leaves the caller's
    random numbers, and every other GPU's, as they were."""
    with fork_device_rngs(device):
        seed_device_rngs(seed, device)
        yield


def precision_notes(dev: torch.device, amp: str | None) -> list[str]:
    """Warnings for ``mixed_precision`` ``amp`` (``None`` or ``"no"``, ``"bf16"``, ``"fp16"``) on
    ``dev``, which a trainer logs before its first step (the Gaussian and the MoL trainers).

    bf16 autocast runs on CUDA devices that support it; fp16 on CUDA (with loss scaling) and on
    MPS (without: ``GradScaler`` is CUDA-only here). bf16 on MPS is not enabled
    (:func:`~rag_relax_plugins.core.device.supports_dtype`), so there it falls back to float32,
    as everything does on CPU.
    """
    if amp is None or amp == "no":
        return []
    if not supports_dtype(dev, torch.bfloat16 if amp == "bf16" else torch.float16):
        return [f"mixed_precision={amp} is not supported on {dev}; training in float32"]
    if amp == "fp16" and dev.type == "mps":
        return ["mixed_precision=fp16 on MPS runs without loss scaling, so small gradients can underflow; "
                "train in float32 (mixed_precision='no') if the loss stalls or turns non-finite "
                "(bf16 autocast is not available on MPS)"]
    return []


def grad_scaler(device_type: str, *, enabled: bool) -> torch.amp.GradScaler:
    """A loss scaler for fp16 training: ``torch.amp.GradScaler(device_type)`` (torch >= 2.3), or
    ``torch.cuda.amp.GradScaler`` on torch 2.2, which has no ``torch.amp.GradScaler`` (the
    trainers built it on every device: ``AttributeError`` there). Scaling is enabled on CUDA
    only (:func:`precision_notes`), which both versions cover.
    """
    amp_scaler = getattr(torch.amp, "GradScaler", None)
    if amp_scaler is not None:
        return amp_scaler(device_type, enabled=enabled)  # type: ignore[no-any-return]
    return torch.cuda.amp.GradScaler(enabled=enabled and device_type == "cuda")
