"""Ready-made MoL vs dot-product setups for MovieLens and HotpotQA (used by the CLI and benchmark).

- MovieLens-100k (learned ids): item tower = an item-id table of width ``D`` (optionally followed
  by a residual MLP, ``item_mlp_hidden``); query tower =
  :class:`~rag_relax_plugins.training.mol_towers.HistoryQueryTower` over the last ``L`` items,
  sharing that table, with ``num_interests`` pooled interest vectors (MoL reads one query
  component from each; the cosine baseline gets them through a learned ``H * D -> D`` map);
  with ``user_embedding=True`` the query tower also learns a vector per user id (the paper's extra
  query component: one more MoL query block, or added to the dot product's query vector). The
  scorer is either cosine / tau on the ``D``-wide tower outputs, or MoL with ``P_q x P_x``
  components of width ``d_P`` (``component_dim``; the CLI and benchmark use ``d_P = D`` with the
  identity warm start). Both models learn the same ``D`` floats per item (the embedding budget);
  a MoL index caches ``P_x * d_P`` floats per item against ``D`` for the dot product.
- HotpotQA (frozen features): both towers look up precomputed MiniLM vectors; MoL learns the
  component projections and the gate on top; the baseline is MiniLM cosine (no training).

A trained model is saved as ``config.json`` (recipe, sizes) + ``model.safetensors`` (trainable
weights only), plus, for MoL, the head alone as ``similarity_config.json`` +
``similarity.safetensors``, all written atomically. :func:`load_recipe_model` rebuilds the whole
model; :func:`load_similarity` only the :class:`MoLSimilarity` head (e.g. for a ``MoLIndex`` or a
``MoLVectorStore`` over the same frozen encoder).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rag_relax_plugins._io import atomic_folder, find_saved_folder, read_json, read_tensors
from rag_relax_plugins._whole_save import reads_whole_save
from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars, require_saved_keys
from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.core.scalars import check_count, check_nonnegative, check_optional_count
from rag_relax_plugins.training.mol_checkpoint import (
    load_model_weights,
    save_model_weights,
)
from rag_relax_plugins.training.mol_towers import (
    DotProductSimilarity,
    FeatureTower,
    HistoryQueryTower,
    IdEmbeddingTower,
    TwoTowerModel,
)
from rag_relax_plugins.training.mol_user_tower import UserQueryTower

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_KIND",
    "RecipeConfig",
    "build_hotpot_model",
    "build_movielens_model",
    "identity_warm_start",
    "load_recipe_model",
    "load_similarity",
    "save_recipe_model",
]

MODEL_KIND = "mol-model"  # the kind save_recipe_model records (atomic_folder)

RECIPE_FORMAT = "rag-relax-mol-recipe"
RECIPE_VERSION = 1


@dataclass(frozen=True)
class RecipeConfig(DictConfig):
    """Model sizes shared by both recipes.

    Attributes:
        similarity: ``"mol"`` or ``"dot"`` (cosine / tau).
        embedding_dim: ``D`` of the item-id table (MovieLens only).
        max_len: history length ``L`` (MovieLens only).
        encoder: ``"pool"`` or ``"transformer"`` history encoder (MovieLens only).
        num_query_embeddings / num_item_embeddings: ``P_q`` / ``P_x``.
        component_dim: ``d_P``; ``None`` means ``D / P_x`` (MovieLens, same budget) or the
            feature width (HotpotQA, identity warm start).
        tau: temperature of both scorers.
        gate_hidden_dim: MoL gate MLP width.
        softmax_dropout: MoL softmax dropout.
        mi_loss_weight: weight of L_MI inside the MoL module.
        dropout: dropout in the history encoder.
        warm_start_noise: MovieLens only: ``None`` initialises the MoL projections at random
            (as the paper); a number starts them as the identity plus that much noise (see
            :func:`identity_warm_start`; needs ``component_dim == embedding_dim``), so the
            untrained MoL equals the cosine / tau baseline.
        num_interests: MovieLens only: ``H`` interest vectors of the pooled history encoder.
        item_mlp_hidden: MovieLens only: hidden width of a residual MLP after the item-id table
            (``0``: none); the learned per-item floats stay ``embedding_dim``.
        user_embedding: MovieLens only: add a learned ``embedding_dim``-wide vector per user id
            to the query tower (:class:`~rag_relax_plugins.training.mol_user_tower.UserQueryTower`;
            the paper's extra query component). MoL reads it as one more block of its query
            features (concatenated; with the warm start, query component ``H`` starts on it), the
            dot product adds it to the history vector. Queries then carry the user id
            (:meth:`~rag_relax_plugins.training.mol_data.NextItemData.with_user_ids`).
        user_dropout: dropout on the user vector in training (the paper's 0.5).
    """

    _config_name = "recipe options"

    similarity: str = "mol"
    embedding_dim: int = 64
    max_len: int = 50
    encoder: str = "pool"
    num_query_embeddings: int = 4
    num_item_embeddings: int = 4
    component_dim: int | None = None
    tau: float = 0.05
    gate_hidden_dim: int = 64
    softmax_dropout: float = 0.0
    mi_loss_weight: float = 1e-3
    dropout: float = 0.1
    warm_start_noise: float | None = None
    num_interests: int = 1
    item_mlp_hidden: int = 0
    user_embedding: bool = False
    user_dropout: float = 0.5

    def __post_init__(self) -> None:
        plain_scalars(self)
        if self.similarity not in ("mol", "dot"):
            raise ValueError(f"similarity must be 'mol' or 'dot', got {self.similarity!r}")
        if not isinstance(self.user_embedding, bool):
            raise TypeError(f"user_embedding must be a bool, got {self.user_embedding!r}")
        if isinstance(self.user_dropout, bool) or not isinstance(self.user_dropout, (int, float)) or not 0 <= self.user_dropout < 1:
            raise ValueError(f"user_dropout must be a number in [0, 1), got {self.user_dropout!r}")
        if self.encoder not in ("pool", "transformer"):
            raise ValueError(f"encoder must be 'pool' or 'transformer', got {self.encoder!r}")
        for name, low in (("num_interests", 1), ("item_mlp_hidden", 0), ("embedding_dim", 1), ("max_len", 1),
                          ("num_query_embeddings", 1), ("num_item_embeddings", 1), ("gate_hidden_dim", 1)):
            check_count(name, getattr(self, name), low)
        def number(v: object) -> bool:
            return isinstance(v, (int, float)) and math.isfinite(v)

        if not (number(self.tau) and self.tau > 0):
            raise ValueError(f"tau must be a finite number > 0, got {self.tau!r}")
        for name in ("dropout", "softmax_dropout"):
            v = getattr(self, name)
            if not (number(v) and 0 <= v < 1):
                raise ValueError(f"{name} must be a finite number in [0, 1), got {v!r}")
        noise = self.warm_start_noise
        if not (number(self.mi_loss_weight) and self.mi_loss_weight >= 0):
            raise ValueError(f"mi_loss_weight must be a finite number >= 0, got {self.mi_loss_weight!r}")
        if noise is not None and not (number(noise) and noise >= 0):
            raise ValueError(f"warm_start_noise must be a finite number >= 0 or None, got {noise!r}")
        # None picks the default; 0 used to mean it too, silently
        check_optional_count("component_dim", self.component_dim, 1)

    def mol_config(self, query_dim: int, item_dim: int, default_component_dim: int) -> MoLConfig:
        """The :class:`MoLConfig` for towers of the given widths."""
        return MoLConfig(
            query_dim=query_dim,
            item_dim=item_dim,
            num_query_embeddings=self.num_query_embeddings,
            num_item_embeddings=self.num_item_embeddings,
            component_dim=default_component_dim if self.component_dim is None else self.component_dim,
            tau=self.tau,
            gate_hidden_dim=self.gate_hidden_dim,
            softmax_dropout=self.softmax_dropout,
            mi_loss_weight=self.mi_loss_weight,
        )


def build_movielens_model(num_items: int, recipe: RecipeConfig, *, num_users: int = 0) -> TwoTowerModel:
    """Item-id table + history encoder (+ user embedding) + MoL or cosine scorer (module docstring).

    Parameters are initialised from the global torch RNG: seed it (``torch.manual_seed``) first.

    Args:
        num_items: item-id table size (id 0 is padding).
        recipe: model sizes.
        num_users: user-id table size; required (>= 2) with ``recipe.user_embedding``.
    """
    d = recipe.embedding_dim
    if recipe.similarity == "mol" and recipe.component_dim is None and d % recipe.num_item_embeddings:
        raise ValueError(
            f"embedding_dim ({d}) must be divisible by num_item_embeddings ({recipe.num_item_embeddings})"
        )
    items = IdEmbeddingTower(num_items, d, padding_idx=0, mlp_hidden=recipe.item_mlp_hidden)
    history = HistoryQueryTower(
        items, recipe.max_len, encoder=recipe.encoder, dropout=recipe.dropout,
        num_interests=recipe.num_interests,
        interest_combine="linear" if recipe.similarity == "dot" else "concat",
    )
    query: HistoryQueryTower | UserQueryTower = history
    if recipe.user_embedding:
        if num_users < 2:
            raise ValueError(f"recipe.user_embedding needs num_users >= 2, got {num_users!r}")
        query = UserQueryTower(
            history, num_users, dropout=float(recipe.user_dropout),
            combine="sum" if recipe.similarity == "dot" else "concat",
        )
    sim: torch.nn.Module
    if recipe.similarity == "dot":
        sim = DotProductSimilarity(normalize=True, tau=recipe.tau)
    else:
        mol = MoLSimilarity(recipe.mol_config(query.out_dim, d, d // recipe.num_item_embeddings))
        if recipe.warm_start_noise is not None:
            if mol.config.component_dim != d:
                raise ValueError(
                    f"warm_start_noise needs component_dim == embedding_dim ({d}), got {mol.config.component_dim}"
                )
            blocks = mol.config.query_dim // d
            if mol.config.num_query_embeddings < blocks:
                log.warning(
                    "identity warm start: %d query components for %d feature blocks (%d interests%s): "
                    "component i starts on block i, so blocks %d..%d%s start on no component",
                    mol.config.num_query_embeddings, blocks, recipe.num_interests,
                    " + the user vector" if recipe.user_embedding else "",
                    mol.config.num_query_embeddings, blocks - 1,
                    " (the user vector among them)" if recipe.user_embedding else "",
                )
            identity_warm_start(mol, recipe.warm_start_noise, seed=int(torch.randint(0, 2**31 - 1, ()).item()))
        sim = mol
    model = TwoTowerModel(query, items, sim, num_items, excluded_items=(0,))
    if recipe.similarity != "dot" and recipe.warm_start_noise is not None:
        _record_warm_start(model, recipe.warm_start_noise)
    return model


def _record_warm_start(model: TwoTowerModel, noise: float) -> None:
    """Note the warm start on the model: a public attribute, so that the resume check
    (:func:`~rag_relax_plugins.training.mol_train.run_signature`) refuses a resume whose warm
    start differs (the checkpoint's weights started from the other one)."""
    model.warm_start_noise = float(noise)


@torch.no_grad()
def identity_warm_start(sim: MoLSimilarity, noise: float = 0.0, *, seed: int = 0) -> None:
    """Start every MoL component as (close to) the identity, so the untrained MoL is cosine / tau.

    Each of the ``P_q`` query and ``P_x`` item component projections becomes ``I`` (when
    ``d_P == D``) or a random semi-orthogonal ``d_P x D`` map, plus ``noise * N(0, 1/D)``. With
    all components equal to the cosine, the mixture equals it whatever the gate says; training
    then departs from the frozen encoder's own similarity instead of from a random one. This is a
    departure from the paper (which trains MoL from scratch on learned encoders).

    Query features made of ``k`` concatenated ``D``-wide vectors (``query_dim = k * item_dim``,
    e.g. the ``k`` interests of a multi-interest history encoder): query component ``i`` starts
    as that map applied to block ``i mod k`` (zero on the other blocks), so each component reads
    one interest and the untrained MoL mixes the cosines of the interests.
    """
    noise = check_nonnegative("noise", noise)
    c = sim.config
    if c.query_dim % c.item_dim:
        raise ValueError(
            f"identity_warm_start needs query_dim to be a multiple of item_dim, got {c.query_dim} and {c.item_dim}"
        )
    blocks = c.query_dim // c.item_dim
    g = torch.Generator().manual_seed(seed)
    dim, dp = c.item_dim, c.component_dim
    if dp == dim:
        base = torch.eye(dim)
    else:
        a = torch.randn(max(dim, dp), min(dim, dp), generator=g)
        qmat = torch.linalg.qr(a).Q  # orthonormal columns
        base = qmat.T[:dp, :dim] if dp <= dim else qmat[:dp, :dim]
    for proj, count, k in ((sim.query_proj, c.num_query_embeddings, blocks), (sim.item_proj, c.num_item_embeddings, 1)):
        w = torch.zeros(count * dp, k * dim)  # (count * d_P, k * D)
        for i in range(count):  # component i reads block i mod k
            w[i * dp : (i + 1) * dp, (i % k) * dim : (i % k + 1) * dim] = base
        w = w + noise * torch.randn(w.shape, generator=g) / dim**0.5
        proj.weight.copy_(w.to(proj.weight.dtype))
        if proj.bias is not None:
            proj.bias.zero_()


def build_hotpot_model(
    query_features: torch.Tensor,
    doc_features: torch.Tensor,
    recipe: RecipeConfig,
    *,
    warm_start_noise: float = 0.1,
    seed: int = 0,
) -> TwoTowerModel:
    """Frozen-feature towers + MoL (identity warm start) or cosine over the features.

    Args:
        query_features: ``(Q, D) x float`` one row per training (or test) question.
        doc_features: ``(N, D) x float`` one row per corpus document.
        recipe: sizes; ``component_dim=None`` uses ``D``.
        warm_start_noise: see :func:`identity_warm_start`.
        seed: seeds the warm-start noise.
    """
    d = doc_features.shape[1]
    qt, it = FeatureTower(query_features), FeatureTower(doc_features)
    sim: torch.nn.Module
    if recipe.similarity == "dot":
        sim = DotProductSimilarity(normalize=True, tau=recipe.tau)
    else:
        mol = MoLSimilarity(recipe.mol_config(query_features.shape[1], d, d))
        identity_warm_start(mol, warm_start_noise, seed=seed)
        sim = mol
    model = TwoTowerModel(qt, it, sim, doc_features.shape[0])
    if recipe.similarity != "dot":
        _record_warm_start(model, warm_start_noise)
    return model


def save_recipe_model(
    model: TwoTowerModel, folder: str | os.PathLike[str], *, dataset: str, recipe: RecipeConfig, extra: dict[str, Any] | None = None
) -> Path:
    """Atomically write ``config.json`` + ``model.safetensors`` (frozen features are not saved)."""
    meta = {
        "format": RECIPE_FORMAT,
        "format_version": RECIPE_VERSION,
        "dataset": dataset,
        "num_items": model.num_items,
        "recipe": recipe.to_dict(),
        **(extra or {}),
    }
    if isinstance(model.query_tower, UserQueryTower):
        meta["num_users"] = model.query_tower.num_users

    def write(tmp: Path) -> None:
        save_model_weights(model, tmp)
        (tmp / "config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if isinstance(model.similarity, MoLSimilarity):
            sim_cfg = model.similarity.config.to_dict()
            (tmp / "similarity_config.json").write_text(json.dumps(sim_cfg, indent=2), encoding="utf-8")
            state = {k: v.detach().cpu().contiguous() for k, v in model.similarity.state_dict().items()}
            save_file(state, str(tmp / "similarity.safetensors"))

    return atomic_folder(folder, write, kind=MODEL_KIND)


def _saved_model_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder``, or the backup a crash left between the two renames of a replacing save."""
    return find_saved_folder(folder, "config.json", what="saved model", kind=MODEL_KIND)


def load_similarity(folder: str | os.PathLike[str]) -> MoLSimilarity:
    """The trained :class:`MoLSimilarity` head of a model saved by :func:`save_recipe_model`.

    Raises:
        FileNotFoundError: the folder holds no MoL head (e.g. a dot-product model).
    """
    path = _saved_model_folder(folder)
    cfg_file, weights = path / "similarity_config.json", path / "similarity.safetensors"
    if not (cfg_file.is_file() and weights.is_file()):
        raise FileNotFoundError(f"no MoL head at {path} (expected similarity_config.json and similarity.safetensors)")
    saved = read_json(cfg_file)
    try:
        sim = MoLSimilarity(MoLConfig.from_dict(saved))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{cfg_file}: not a valid MoL similarity config: {exc}") from exc
    require_saved_keys(saved, ("tau",), cfg_file)
    try:
        sim.load_state_dict(read_tensors(weights))
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        raise ValueError(f"{weights} does not match {cfg_file.name}: {exc}") from exc
    return sim.eval()


@reads_whole_save("folder")  # a save replacing the folder mid-read is read again
def load_recipe_model(
    folder: str | os.PathLike[str],
    *,
    query_features: torch.Tensor | None = None,
    doc_features: torch.Tensor | None = None,
) -> tuple[TwoTowerModel, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_recipe_model` (HotpotQA needs the features again).

    Returns:
        ``(model in eval mode, config dict)``.

    Raises:
        FileNotFoundError / ValueError: missing files, a save of another kind (named), unknown format
            or version, missing features.
    """
    path = _saved_model_folder(folder)
    cfg_file = path / "config.json"
    meta: dict[str, Any] = read_json(cfg_file)
    if meta.get("format") != RECIPE_FORMAT or meta.get("format_version") != RECIPE_VERSION:
        raise ValueError(f"{cfg_file} is not a {RECIPE_FORMAT} v{RECIPE_VERSION} model")
    try:
        recipe = RecipeConfig.from_dict(meta["recipe"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{cfg_file}: no valid 'recipe' ({exc!r})") from exc
    dataset = meta.get("dataset")
    if dataset not in ("movielens", "hotpotqa"):
        raise ValueError(f"unknown dataset {dataset!r} in {cfg_file}")
    if dataset == "hotpotqa" and (query_features is None or doc_features is None):
        raise ValueError("query_features and doc_features are required to load a HotpotQA model")
    counts: dict[str, int] = {}
    if dataset == "movielens":
        for name, default in (("num_items", None), ("num_users", 0)):  # 9.7 was taken, no num_items a KeyError
            counts[name] = check_count(f"{cfg_file}: {name}", meta.get(name, default), 0)
    with torch.random.fork_rng(devices=[]):  # the initial weights (replaced by the load) drew from the caller's RNG
        if dataset == "movielens":
            model = build_movielens_model(counts["num_items"], recipe, num_users=counts["num_users"])
        else:
            assert query_features is not None and doc_features is not None
            model = build_hotpot_model(query_features, doc_features, recipe)
    load_model_weights(model, path)
    return model.eval(), meta
