"""``load_causal_lm`` returns a float32 model, as documented, whatever dtype the folder was saved in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.mark.parametrize("saved", [torch.bfloat16, torch.float16])
def test_a_half_precision_folder_loads_in_float32(minilm_path: str, tmp_path: Path, saved: torch.dtype) -> None:
    """transformers keeps the dtype stored in the folder: a bf16 reader loaded in bf16 (about 9x
    slower on CPU, and not the float32 the reader's losses are checked in)."""
    transformers = pytest.importorskip("transformers")
    from rag_relax_plugins.readers.loading import load_causal_lm

    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(cfg).to(saved)
    reference.save_pretrained(str(tmp_path / "m"))
    transformers.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(str(tmp_path / "m"))
    model, _ = load_causal_lm(tmp_path / "m")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    want = dict(reference.named_parameters())
    for name, p in model.named_parameters():  # the saved values, widened
        assert torch.equal(p.detach(), want[name].detach().float()), name


def test_a_cache_recording_the_gguf_quantization_loads_as_a_plain_model(minilm_path: str, tmp_path: Path) -> None:
    """The conversion copied the GGUF's quantization_config into the cache's config.json: every
    load was a "quantized" model that refused .float(), .half() and save_pretrained (review)."""
    import json

    transformers = pytest.importorskip("transformers")
    from rag_relax_plugins.readers.loading import load_causal_lm

    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    transformers.LlamaForCausalLM(cfg).save_pretrained(str(tmp_path / "m"))
    transformers.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(str(tmp_path / "m"))
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["quantization_config"] = {"quant_method": "gguf", "dequantize": False}
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    model, _ = load_causal_lm(tmp_path / "m")
    model.half()
    model.float()
    model.save_pretrained(str(tmp_path / "again"))
    assert "quantization_config" not in json.loads((tmp_path / "again" / "config.json").read_text())


def test_a_folder_that_is_not_a_model_is_named(tmp_path: Path) -> None:
    """An empty folder failed inside the tokenizer with five lines about sentencepiece (review)."""
    pytest.importorskip("transformers")
    from rag_relax_plugins.readers.loading import load_causal_lm

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"is not a transformers model folder \(no config\.json\)"):
        load_causal_lm(tmp_path / "empty")


@pytest.mark.parametrize("damage", ["drop_weight", "extra_layer", "truncated", "reshaped"])
def test_a_damaged_model_folder_is_refused_not_filled_at_random(minilm_path: str, tmp_path: Path, damage: str) -> None:
    """transformers filled a missing weight (or a layer config.json adds) at random and only logged
    it; a truncated weights file raised safetensors' own error, which the CLI did not catch
    (corrupt-file review)."""
    import json

    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file, save_file

    from rag_relax_plugins.readers.loading import load_causal_lm

    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    folder = tmp_path / "m"
    transformers.LlamaForCausalLM(cfg).save_pretrained(str(folder))
    transformers.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(str(folder))
    load_causal_lm(folder)  # intact: loads
    weights = folder / "model.safetensors"
    if damage == "drop_weight":
        tensors = load_file(str(weights))
        del tensors["model.layers.0.mlp.down_proj.weight"]
        save_file(tensors, str(weights), metadata={"format": "pt"})
        match = r"lacks weights its config.json needs, e.g. model.layers.0.mlp.down_proj.weight"
    elif damage == "extra_layer":
        meta = json.loads((folder / "config.json").read_text())
        meta["num_hidden_layers"] = 2
        (folder / "config.json").write_text(json.dumps(meta))
        match = r"lacks weights its config.json needs, e.g. model.layers.1\."
    elif damage == "reshaped":  # transformers raised its own RuntimeError, which the CLI did not catch
        tensors = load_file(str(weights))
        tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(33, 16)
        save_file(tensors, str(weights), metadata={"format": "pt"})
        match = r"lacks weights its config.json needs, e.g. \('model.layers.0.mlp.up_proj.weight'"
    else:
        weights.write_bytes(weights.read_bytes()[:100])
        match = r"model_path cannot be loaded"
    with pytest.raises(ValueError, match=rf"{folder}: .*{match}" if damage != "truncated" else match):
        load_causal_lm(folder)
