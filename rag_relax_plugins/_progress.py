"""Progress bars drawn by the libraries the package loads models with (no torch import here: the
``rag-relax`` entry point uses it for every command's ``--no-progress``)."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

__all__ = ["library_progress"]


@contextlib.contextmanager
def library_progress(show: bool) -> Iterator[None]:
    """With ``show=False``, turn off transformers' and huggingface_hub's own progress bars.

    Loading or saving a transformer backbone draws "Loading weights" / "Writing model shards"
    bars that ``show_progress=False`` must silence too. Their previous state is restored on
    exit, error or not. Nothing happens with ``show=True`` or without transformers.
    """
    if show or importlib.util.find_spec("transformers") is None:
        yield
        return
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    was_on, hub_was_on = hf_logging.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # also turns off huggingface_hub's bars
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
        if hub_was_on:
            hub_utils.enable_progress_bars()
        else:
            hub_utils.disable_progress_bars()
