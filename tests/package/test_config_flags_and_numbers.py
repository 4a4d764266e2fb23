"""Every config refuses a non-bool flag and a bool number, by the fields' annotations
(:func:`rag_relax_plugins.core.config_dict.plain_scalars`). Before, ``save_checkpoints="no"`` and
``evidence="no"`` (truthy) switched the flag on, ``logq_correction="no"`` kept the correction, and
``lr=True`` trained at 1.0; ``RecipeConfig`` accepted ``tau=0``, ``encoder="gru"`` or
``dropout=1.5`` until the model was built."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rag_relax_plugins.core.config_dict import plain_scalars
from rag_relax_plugins.core.mol_config import MoLConfig
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.index.first_stage import FirstStageConfig
from rag_relax_plugins.rerankers.maxsim_config import MaxSimConfig
from rag_relax_plugins.training.gaussian_objective import TrainConfig
from rag_relax_plugins.training.grerank_config import GRerankConfig
from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig
from rag_relax_plugins.training.mol_recipes import RecipeConfig
from rag_relax_plugins.training.mol_train_config import MoLTrainConfig

MOL = dict(query_dim=8, item_dim=8)
# MaxSimConfig and FirstStageConfig hold neither a flag nor a float (checked below)
CONFIGS = [(TrainConfig, {}), (MaxSimTrainConfig, {}), (MoLTrainConfig, {}), (RecipeConfig, {}),
           (GRerankConfig, {}), (GaussianConfig, {}), (MoLConfig, MOL)]


def _fields(cls: type, annotations: tuple[str, ...]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.type in annotations]


@pytest.mark.parametrize(("cls", "base"), CONFIGS, ids=[c.__name__ for c, _ in CONFIGS])
def test_every_flag_must_be_a_bool_and_every_float_must_not_be(cls: type, base: dict) -> None:
    flags, floats = _fields(cls, ("bool",)), _fields(cls, ("float", "float | None"))
    assert flags or floats  # the annotations are read as written (postponed: strings)
    for name in flags:
        for bad in ("no", 0, 1, None):
            with pytest.raises(TypeError, match=rf"^{name} must be True or False, got {bad!r}$"):
                cls(**base, **{name: bad})
        default = getattr(cls(**base), name)
        assert getattr(cls(**base, **{name: np.bool_(default)}), name) is default  # a numpy flag is one
    for name in floats:
        with pytest.raises(TypeError, match=rf"^{name} must be a number, not a bool, got True$"):
            cls(**base, **{name: True})


def test_the_configs_left_out_hold_no_flag_and_no_float() -> None:
    for cls in (MaxSimConfig, FirstStageConfig):
        assert not _fields(cls, ("bool", "float", "float | None"))


@pytest.mark.parametrize(("option", "match"), [
    ({"max_grad_norm": "1"}, r"max_grad_norm must be None or a finite number > 0, got '1'"),
    ({"max_grad_norm": float("inf")}, r"max_grad_norm must be None or a finite number > 0, got inf"),
    ({"min_lr_ratio": "0.1"}, r"min_lr_ratio must be a number in \[0, 1\], got '0.1'"),
])
def test_mol_training_numbers_of_the_wrong_kind_are_named(option: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MoLTrainConfig(**option)
    assert MoLTrainConfig(max_grad_norm=None, min_lr_ratio=np.float32(0.5)).min_lr_ratio == 0.5


@pytest.mark.parametrize(("option", "match"), [
    ({"tau": 0}, r"tau must be a finite number > 0, got 0"),
    ({"tau": float("nan")}, r"tau must be a finite number > 0"),
    ({"dropout": 1.5}, r"dropout must be a finite number in \[0, 1\), got 1.5"),
    ({"softmax_dropout": 1.0}, r"softmax_dropout must be a finite number in \[0, 1\)"),
    ({"mi_loss_weight": -1.0}, r"mi_loss_weight must be a finite number >= 0"),
    ({"warm_start_noise": -0.1}, r"warm_start_noise must be a finite number >= 0 or None, got -0.1"),
    ({"encoder": "gru"}, r"encoder must be 'pool' or 'transformer', got 'gru'"),
    ({"embedding_dim": 0}, r"embedding_dim must be an int >= 1, got 0"),
    ({"max_len": 0}, r"max_len must be an int >= 1"),
    ({"num_query_embeddings": 0}, r"num_query_embeddings must be an int >= 1"),
    ({"gate_hidden_dim": 0}, r"gate_hidden_dim must be an int >= 1"),
])
def test_recipe_options_are_checked_when_the_config_is_made(option: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RecipeConfig(**option)


def test_recipe_defaults_and_edges_are_accepted() -> None:
    assert RecipeConfig() == RecipeConfig.from_dict(RecipeConfig().to_dict())
    ok = RecipeConfig(warm_start_noise=0.0, dropout=0.0, softmax_dropout=0.0, mi_loss_weight=0.0, tau=np.float64(0.1))
    assert ok.tau == 0.1 and type(ok.tau) is float


def test_plain_scalars_on_a_bare_dataclass() -> None:
    @dataclasses.dataclass(frozen=True)
    class Options:
        flag: bool = False
        rate: float = 1.0
        count: int = 1

        def __post_init__(self) -> None:
            plain_scalars(self)

    assert Options(flag=np.bool_(True), rate=np.float32(0.5), count=np.int64(3)) == Options(True, 0.5, 3)
    with pytest.raises(TypeError, match="flag must be True or False"):
        Options(flag="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rate must be a number, not a bool"):
        Options(rate=False)
    assert Options(count=True).count is True  # ints are each config's own check (bool refused there)


@pytest.mark.parametrize(("cls", "base"), [*CONFIGS, (MaxSimConfig, {}), (FirstStageConfig, {})],
                         ids=[c.__name__ for c, _ in CONFIGS] + ["MaxSimConfig", "FirstStageConfig"])
def test_every_int_option_refuses_a_bool(cls: type, base: dict) -> None:
    """Each config checks its ints itself; GRerankConfig took seed=True (run with seed 1) and
    train_size=True."""
    ints = _fields(cls, ("int", "int | None"))
    assert ints
    for name in ints:
        with pytest.raises((TypeError, ValueError), match=name):
            cls(**base, **{name: True})


def test_path_fields_are_kept_as_strings_in_every_training_config(tmp_path) -> None:
    """A ``Path`` for a folder or file was kept as is: ``to_dict()`` then failed in ``json.dumps``
    (train_config.json, a checkpoint after an epoch) with a message naming no field (review 2026-12-05)."""
    import json

    from rag_relax_plugins.training.gaussian_train import TrainConfig
    from rag_relax_plugins.training.grerank_config import GRerankConfig
    from rag_relax_plugins.training.maxsim_train import MaxSimTrainConfig
    from rag_relax_plugins.training.mol_train_config import MoLTrainConfig

    p = tmp_path / "x"
    for cls, fields in ((GRerankConfig, ("output_dir", "init_from", "resume_from")),
                        (TrainConfig, ("train_file", "output_dir", "val_file", "resume_from")),
                        (MaxSimTrainConfig, ("output_dir", "resume_from", "cache_dir")),
                        (MoLTrainConfig, ("checkpoint_dir",))):
        cfg = cls(**dict.fromkeys(fields, p))
        assert all(getattr(cfg, f) == str(p) and type(getattr(cfg, f)) is str for f in fields), cls
        assert json.loads(json.dumps(cfg.to_dict()))[fields[0]] == str(p)
