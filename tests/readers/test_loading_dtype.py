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
