"""Train / eval mode helpers for modules shared between training and inference code.

``was = model.training; model.eval(); ...; model.train(was)`` restores only the top-level flag:
``train(True)`` also switches submodules that were deliberately in eval mode (a frozen backbone,
a module someone else owns) back to training, with their dropout. :func:`eval_mode` restores
every submodule's own flag instead.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode", "module_lock"]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def module_lock(module: nn.Module) -> threading.RLock:
    """The lock of ``module`` (kept beside it, not on it: modules stay picklable), to hold around
    :func:`eval_mode`: two threads switching one shared module's flags left it in the wrong mode
    (one scored with dropout, and the module's own training mode was lost). Re-entrant, so a call
    made from inside the same module's forward (a hook) does not block itself."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
        return lock


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` (and every submodule) in eval mode; restore each one's mode on exit.

    The flags are restored as they were, without calling ``train()``, so overrides of
    ``train()`` (e.g. one that keeps frozen parts in eval mode) are not re-run.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
