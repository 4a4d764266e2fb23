"""core.modes.eval_mode: every submodule's own train/eval flag comes back, even after an error."""

from __future__ import annotations

import pytest
from torch import nn

from rag_relax_plugins.core.modes import eval_mode


def _model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.1)))
    model.train()
    model[2].eval()  # a part its owner keeps in eval mode
    return model


def test_all_in_eval_inside_and_each_flag_restored() -> None:
    model = _model()
    before = [m.training for m in model.modules()]
    with eval_mode(model) as m:
        assert m is model
        assert not any(x.training for x in model.modules())
    assert [m.training for m in model.modules()] == before == [True, True, True, False, False]


def test_flags_restored_when_the_body_raises() -> None:
    model = _model()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, True, False, False]
