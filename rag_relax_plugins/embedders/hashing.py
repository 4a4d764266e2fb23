"""A deterministic feature-hashing text encoder: the fast, model-free test double.

Texts are lower-cased and split into word tokens (``\\w+`` runs and single punctuation marks).
Features are word n-grams (``ngram_range``) and character n-grams (``char_ngram_range``) of each
word wrapped in ``<`` ``>`` boundary marks, as in fastText (Bojanowski et al., 2017). Each feature
is hashed with BLAKE2b (keyed by ``seed``) to a bucket in ``[0, dim)`` and a sign in ``{-1, +1}``:
the signed "hashing trick" of Weinberger et al. (2009), whose sign removes the bias of collisions
in inner products. Nothing depends on Python's salted ``hash()``, so vectors are identical across
processes and ``PYTHONHASHSEED`` values.

Identical texts give identical vectors; texts sharing words or word pieces get a higher cosine
than unrelated texts. There is no learning and no semantics beyond surface overlap.
"""

from __future__ import annotations

import hashlib
import numbers
import re
from collections.abc import Iterable

import torch

from rag_relax_plugins.core.device import resolve_device
from rag_relax_plugins.core.scalars import check_count
from rag_relax_plugins.embedders._texts import check_batch_size, check_texts
from rag_relax_plugins.embedders.base import TokenEmbeddings

__all__ = ["HashingEncoder", "tokenize"]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``: runs of ``\\w`` and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


def _check_range(value: object, name: str, allow_zero: bool = False) -> tuple[int, int]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    ):  # numpy integers are counts, bools are not (True, True) was accepted, np.int64 refused
        raise TypeError(f"{name} must be a tuple of two ints (min_n, max_n), got {value!r}")
    lo, hi = int(value[0]), int(value[1])
    if (lo < 1 and not (allow_zero and lo == hi == 0)) or hi < lo:
        raise ValueError(f"{name} must satisfy 1 <= min_n <= max_n, got {value!r}")
    return lo, hi


class HashingEncoder:
    """Signed feature hashing of word and character n-grams.

    Implements :class:`~rag_relax_plugins.embedders.base.TextEncoder` and
    :class:`~rag_relax_plugins.embedders.base.TokenEncoder`.

    Args:
        dim: output dimension ``D`` (number of hash buckets).
        seed: hash key; different seeds give independent hash functions.
        ngram_range: word n-gram orders used for text vectors, e.g. ``(1, 2)``.
        char_ngram_range: character n-gram orders inside each ``<word>``; ``(0, 0)`` disables them.
        normalize: default for ``encode(..., normalize=None)``: L2-normalise the output vectors.
        device: where the returned tensors live (default CPU; hashing itself runs in Python).

    Example:
        >>> enc = HashingEncoder(dim=64)
        >>> enc.encode(["a cat", "a cat"]).shape
        torch.Size([2, 64])
    """

    def __init__(
        self,
        dim: int = 256,
        seed: int = 0,
        ngram_range: tuple[int, int] = (1, 2),
        *,
        char_ngram_range: tuple[int, int] = (3, 4),
        normalize: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        self._dim = check_count("dim", dim, 1)
        self._seed = check_count("seed", seed, 0, 2**64 - 1, hint="an 8-byte hash key")
        self.ngram_range = _check_range(ngram_range, "ngram_range")
        self.char_ngram_range = _check_range(char_ngram_range, "char_ngram_range", allow_zero=True)
        self.normalize = bool(normalize)
        self.device = resolve_device(device) if device is not None else torch.device("cpu")
        self._key = self._seed.to_bytes(8, "little")
        self._cache: dict[str, tuple[int, float]] = {}

    @property
    def dim(self) -> int:
        """Output dimension ``D``."""
        return self._dim

    @property
    def seed(self) -> int:
        """Hash seed (read-only: the hash key and the memo of buckets are built from it)."""
        return self._seed

    def __repr__(self) -> str:
        return (
            f"HashingEncoder(dim={self._dim}, seed={self.seed}, ngram_range={self.ngram_range}, "
            f"char_ngram_range={self.char_ngram_range}, normalize={self.normalize})"
        )

    # -- hashing ------------------------------------------------------------------------------
    def _bucket(self, feature: str) -> tuple[int, float]:
        """``(bucket, sign)`` of one feature string (memoised)."""
        hit = self._cache.get(feature)
        if hit is None:
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, key=self._key).digest()
            h = int.from_bytes(digest, "little")
            hit = (h % self._dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self._cache) < 1_000_000:
                self._cache[feature] = hit
        return hit

    def _char_features(self, word: str) -> Iterable[str]:
        lo, hi = self.char_ngram_range
        if hi == 0:
            return
        marked = f"<{word}>"
        for n in range(lo, hi + 1):
            for i in range(len(marked) - n + 1):
                yield "c:" + marked[i : i + n]

    def _text_features(self, tokens: list[str]) -> Iterable[str]:
        lo, hi = self.ngram_range
        for n in range(lo, hi + 1):
            for i in range(len(tokens) - n + 1):
                yield "w:" + " ".join(tokens[i : i + n])
        for tok in tokens:
            yield from self._char_features(tok)

    def _token_features(self, token: str) -> Iterable[str]:
        yield "w:" + token
        yield from self._char_features(token)

    def _dense(self, rows: list[list[tuple[int, float]]], normalize: bool) -> torch.Tensor:
        """``(len(rows), D) x float32`` from lists of ``(bucket, sign)`` pairs (summed)."""
        out = torch.zeros(len(rows), self._dim, dtype=torch.float32)
        r_idx = [r for r, feats in enumerate(rows) for _ in feats]
        if r_idx:
            cols = torch.tensor([b for feats in rows for b, _ in feats], dtype=torch.long)
            vals = torch.tensor([s for feats in rows for _, s in feats], dtype=torch.float32)
            out.index_put_((torch.tensor(r_idx, dtype=torch.long), cols), vals, accumulate=True)
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.to(self.device)

    # -- public API ----------------------------------------------------------------------------
    def encode(
        self,
        texts: list[str],
        *,
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress: bool = False,
    ) -> torch.Tensor:
        """Encode texts into one hashed vector each.

        Args:
            texts: ``N`` strings (a list, not a bare str).
            batch_size: accepted for protocol compatibility (validated, otherwise unused).
            normalize: L2-normalise each row; ``None`` uses the constructor's ``normalize``.
                An empty text gives a zero vector either way.
            show_progress: ignored (encoding is fast).

        Returns:
            ``(N, D) x float32`` on :attr:`device`.
        """
        texts = check_texts(texts)
        check_batch_size(batch_size)
        norm = self.normalize if normalize is None else bool(normalize)
        rows = [[self._bucket(f) for f in self._text_features(tokenize(t))] for t in texts]
        return self._dense(rows, norm)

    def encode_tokens(
        self,
        texts: list[str],
        *,
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress: bool = False,
    ) -> TokenEmbeddings:
        """Encode texts into one hashed vector per token (see :func:`tokenize`).

        A token's vector hashes the token itself and its character n-grams, so tokens that share
        word pieces are similar.

        Args:
            texts: ``B`` strings.
            batch_size: validated, otherwise unused.
            normalize: L2-normalise each token vector; ``None`` uses the constructor's default.
            show_progress: ignored.

        Returns:
            :class:`TokenEmbeddings` with ``(B, L, D) x float32`` embeddings (zeros at padding) and
            a ``(B, L) x bool`` mask, ``L = max(1, longest text in tokens)``; a text without
            tokens has an all-False mask row.
        """
        texts = check_texts(texts)
        check_batch_size(batch_size)
        norm = self.normalize if normalize is None else bool(normalize)
        token_lists = [tokenize(t) for t in texts]
        length = max([1, *(len(toks) for toks in token_lists)])
        flat = [
            [self._bucket(f) for f in self._token_features(tok)]
            for toks in token_lists
            for tok in toks
        ]
        vectors = self._dense(flat, norm)  # (total tokens, D)
        emb = torch.zeros(len(texts), length, self._dim, dtype=torch.float32, device=self.device)
        mask = torch.zeros(len(texts), length, dtype=torch.bool, device=self.device)
        lengths = torch.tensor(
            [len(toks) for toks in token_lists], dtype=torch.long, device=self.device
        )
        mask[:] = torch.arange(length, device=self.device)[None, :] < lengths[:, None]
        emb[mask] = vectors  # row-major order of mask matches the flattened token order
        return TokenEmbeddings(embeddings=emb, mask=mask)
