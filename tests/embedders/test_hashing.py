"""HashingEncoder: determinism, similarity ordering, shapes, token masks, validation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from rag_relax_plugins.embedders.base import TextEncoder, TokenEncoder
from rag_relax_plugins.embedders.hashing import HashingEncoder, tokenize


def test_implements_protocols() -> None:
    enc = HashingEncoder(dim=32)
    assert isinstance(enc, TextEncoder)
    assert isinstance(enc, TokenEncoder)
    assert enc.dim == 32


def test_identical_texts_identical_vectors_and_shape() -> None:
    enc = HashingEncoder(dim=64)
    out = enc.encode(["The cat sat.", "The cat sat.", "dogs bark"])
    assert out.shape == (3, 64)
    assert out.dtype == torch.float32
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], out[2])


def test_similar_texts_have_higher_cosine_than_unrelated() -> None:
    enc = HashingEncoder(dim=256, normalize=True)
    a, b, c = enc.encode(
        [
            "the quick brown fox jumps over the lazy dog",
            "a quick brown fox jumped over a lazy dog",
            "quantum chromodynamics describes quarks and gluons",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_normalize_flag_and_constructor_default() -> None:
    enc = HashingEncoder(dim=64)
    raw = enc.encode(["hello world hello"])
    unit = enc.encode(["hello world hello"], normalize=True)
    assert raw.norm() > 1.5
    assert torch.allclose(unit.norm(dim=1), torch.ones(1))
    assert torch.allclose(
        HashingEncoder(dim=64, normalize=True).encode(["hello world hello"]), unit
    )
    assert torch.equal(enc.encode([""], normalize=True), torch.zeros(1, 64))


def test_seed_changes_the_hash_function() -> None:
    text = ["retrieval augmented generation"]
    assert not torch.equal(HashingEncoder(seed=0).encode(text), HashingEncoder(seed=1).encode(text))


def test_independent_of_python_hash_seed() -> None:
    code = (
        "from rag_relax_plugins.embedders.hashing import HashingEncoder;"
        "print(HashingEncoder(dim=16).encode(['stable across processes']).tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert (
        res.stdout
        == str(HashingEncoder(dim=16).encode(["stable across processes"]).tolist()) + "\n"
    )


def test_encode_tokens_shapes_and_mask() -> None:
    enc = HashingEncoder(dim=32)
    texts = ["Hello, world!", "", "one"]
    out = enc.encode_tokens(texts)
    lengths = [len(tokenize(t)) for t in texts]
    assert lengths == [4, 0, 1]
    assert out.embeddings.shape == (3, 4, 32)
    assert out.lengths.tolist() == lengths
    assert out.mask.dtype == torch.bool
    assert torch.all(out.embeddings[~out.mask] == 0)
    assert torch.all(out.embeddings[out.mask].abs().sum(-1) > 0)
    # a token's vector does not depend on its context
    single = enc.encode_tokens(["world"]).embeddings[0, 0]
    assert torch.equal(out.embeddings[0, 2], single)


def test_encode_tokens_all_empty_has_length_one() -> None:
    out = HashingEncoder(dim=8).encode_tokens(["", "  "], normalize=True)
    assert out.embeddings.shape == (2, 1, 8)
    assert not out.mask.any()


def test_empty_list() -> None:
    enc = HashingEncoder(dim=8)
    assert enc.encode([]).shape == (0, 8)
    assert enc.encode_tokens([]).embeddings.shape == (0, 1, 8)


@pytest.mark.parametrize(
    ("texts", "exc", "match"),
    [
        ("a bare string", TypeError, "list of str"),
        (["ok", 3], TypeError, r"texts\[1\]"),
        (None, TypeError, "texts"),
    ],
)
def test_bad_texts(texts: object, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        HashingEncoder().encode(texts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 0}, "dim"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, r"seed must be an int in \[0, 18446744073709551615\] \(an 8-byte hash key\)"),  # was an OverflowError
        ({"ngram_range": (2, 1)}, "ngram_range"),
    ],
)
def test_bad_constructor_args(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HashingEncoder(**kwargs)  # type: ignore[arg-type]


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        HashingEncoder().encode(["x"], batch_size=0)


def test_seed_is_read_only() -> None:
    # the hash key is built from it: a reassigned seed left the vectors on the old one while
    # cache keys (embedders.base.encoder_settings) reported the new one
    enc = HashingEncoder(dim=16, seed=3)
    with pytest.raises(AttributeError):
        enc.seed = 1  # type: ignore[misc]
    assert enc.seed == 3


def test_encoder_settings_change_when_weights_are_replaced_in_the_same_folder(tmp_path) -> None:
    import os
    from types import SimpleNamespace

    from rag_relax_plugins.embedders.base import encoder_settings

    (tmp_path / "model.safetensors").write_bytes(b"x" * 8)
    (tmp_path / "config.json").write_text("{}")
    enc = SimpleNamespace(model_path=tmp_path, max_seq_length=256)
    before = encoder_settings(enc)
    assert before["model_path"] == str(tmp_path) and "weights" in before
    (tmp_path / "config.json").write_text('{"a": 1}')  # not a weight file: same key
    assert encoder_settings(enc) == before
    (tmp_path / "model.safetensors").write_bytes(b"y" * 9)  # new weights, same folder
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))
    assert encoder_settings(enc)["weights"] != before["weights"]  # cache keys (MaxSim tokens) follow
    assert "weights" not in encoder_settings(HashingEncoder(dim=16))


def test_unavailable_device_refused_when_built() -> None:
    """A device that is not there is refused at construction (it failed at the first encode)."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        HashingEncoder(device="cuda")
    assert HashingEncoder().device == torch.device("cpu")  # the default stays the CPU


def test_gaussian_hashing_spec_with_a_seed_beyond_64_bits() -> None:
    from rag_relax_plugins.embedders.gaussian import GaussianConfig, GaussianEmbedder

    with pytest.raises(ValueError, match="seed must be an int in"):
        GaussianEmbedder(GaussianConfig(backbone=f"hashing:64:{2**64}"), device="cpu")


def test_a_lone_surrogate_is_named_by_every_text_path(minilm_path: str) -> None:
    """json.loads('"caf\\ud800e"') is a str UTF-8 cannot encode: the hashing encoder failed with
    UnicodeEncodeError and MiniLM's tokenizer with "TextEncodeInput must be Union[...]", neither
    naming the text (review). Rerankers' query and documents likewise."""
    import json

    from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder
    from rag_relax_plugins.rerankers.maxsim import MaxSimConfig, MaxSimReranker

    bad = json.loads('"caf\\ud800e"')
    message = r"is not valid Unicode text \(a lone surrogate at position 3\)"
    with pytest.raises(ValueError, match=r"^texts\[1\] " + message):
        HashingEncoder(dim=8).encode(["ok", bad])
    with pytest.raises(ValueError, match=r"^texts\[0\] " + message):
        SentenceTransformerEncoder(minilm_path, device="cpu").encode([bad])
    rr = MaxSimReranker(MaxSimConfig(projection_dim=None, token_dim=8), encoder=HashingEncoder(dim=8))
    with pytest.raises(ValueError, match=r"^documents\[2\] " + message):
        rr.rerank("q", ["a", "b", bad])
    with pytest.raises(ValueError, match=r"^query " + message):
        rr.score(bad, ["a"])
    assert HashingEncoder(dim=8).encode(["caf\u00e9"]).shape == (1, 8)  # ordinary non-ASCII text
