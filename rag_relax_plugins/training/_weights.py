"""Saved weights checked against a module before any of them is loaded into it.

``nn.Module.load_state_dict`` copies every tensor whose key matches, then raises for the missing,
unexpected or mis-shaped ones: a refused file left a caller's model (the MoL trainer's
``load_checkpoint``, a G-Rerank resume into a passed reranker) half-loaded. The comparison is with
``module.state_dict()``, before a module's load hooks run (a hook that renames old keys does not
help here); every trainer saves exactly those keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["weights_mismatch"]


def weights_mismatch(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading into ``module``, or ``None`` when it fits.

    Returns:
        ``"missing [...], unexpected [...]"`` (keys), else ``"N weight(s) of another shape, e.g.
        key (saved shape) saved vs (own shape) now (a different size option?)"``, else the same for
        weights of another dtype, else ``None``.
    """
    own = module.state_dict()
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if missing or unexpected:
        return f"missing {missing}, unexpected {unexpected}"
    shapes = sorted(k for k, v in state.items() if tuple(own[k].shape) != tuple(v.shape))
    if shapes:
        k = shapes[0]
        return (f"{len(shapes)} weight(s) of another shape, e.g. {k} {tuple(state[k].shape)} saved vs "
                f"{tuple(own[k].shape)} now (a different size option?)")
    # load_state_dict casts: integer weights (damage) or float16 ones loaded silently and the
    # resumed run differed from the interrupted one; a checkpoint holds the module's own dtypes
    dtypes = sorted(k for k, v in state.items() if own[k].dtype != v.dtype)
    if dtypes:
        k = dtypes[0]
        return (f"{len(dtypes)} weight(s) of another dtype, e.g. {k} {state[k].dtype} saved vs {own[k].dtype} "
                "now (a damaged file, or a model converted with .half() / .to(dtype)?)")
    return None
