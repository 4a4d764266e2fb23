"""HashingEncoder against an independent reference of its documented features: lower-cased word
n-grams, ``<word>`` character n-grams, keyed BLAKE2b bucket and sign, summed (review 2026-12-05:
six hand mutants of the encoder, the test double behind many MaxSim and index tests, survived)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

from rag_relax_plugins.embedders.hashing import HashingEncoder


def reference(text: str, dim: int, seed: int, ngram: tuple[int, int], chars: tuple[int, int]) -> torch.Tensor:
    toks = re.findall(r"\w+|[^\w\s]", text.lower())
    feats = ["w:" + " ".join(toks[i : i + n]) for n in range(ngram[0], ngram[1] + 1) for i in range(len(toks) - n + 1)]
    if chars[1]:
        for t in toks:
            m = f"<{t}>"
            feats += ["c:" + m[i : i + n] for n in range(chars[0], chars[1] + 1) for i in range(len(m) - n + 1)]
    v = torch.zeros(dim)
    for f in feats:
        h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8, key=seed.to_bytes(8, "little")).digest(), "little")
        v[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    return v


@pytest.mark.parametrize(("ngram", "chars"), [((1, 2), (3, 4)), ((2, 3), (0, 0)), ((1, 1), (2, 5))])
def test_encode_matches_the_documented_features(ngram: tuple[int, int], chars: tuple[int, int]) -> None:
    text = "The Cat sat on the mat, the CAT sat!"  # repeated, mixed-case tokens
    enc = HashingEncoder(dim=4096, seed=3, ngram_range=ngram, char_ngram_range=chars)
    want = reference(text, 4096, 3, ngram, chars)
    assert torch.equal(enc.encode([text])[0], want)
    assert (want < 0).any() and (want > 0).any() and want.abs().max() >= 2  # signs, and sums


def test_token_vectors_match_the_documented_features() -> None:
    enc = HashingEncoder(dim=4096, seed=5, char_ngram_range=(3, 4))
    out = enc.encode_tokens(["Cat cat"])
    want = reference("cat", 4096, 5, (1, 1), (3, 4))
    assert torch.equal(out.embeddings[0, 0], want) and torch.equal(out.embeddings[0, 1], want)
    normed = HashingEncoder(dim=4096, seed=5, normalize=True).encode_tokens(["Cat"])
    assert torch.allclose(normed.embeddings[0, 0].norm(), torch.tensor(1.0))


def test_ngram_ranges_take_numpy_integers_and_refuse_bools() -> None:
    enc = HashingEncoder(dim=64, ngram_range=(np.int64(1), np.int64(2)))
    assert enc.ngram_range == (1, 2) and all(type(v) is int for v in enc.ngram_range)
    with pytest.raises(TypeError, match="ngram_range must be a tuple of two ints"):
        HashingEncoder(dim=64, ngram_range=(True, True))
