"""MoL similarity: reduction to a scaled dot product, gradients, caching paths, the MI loss."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from rag_relax_plugins.core.mol import (
    MoLConfig,
    MoLItemState,
    MoLSimilarity,
    mol_component_dots,
    mol_mi_loss,
)


def _sim(
    p_q: int = 2, p_x: int = 3, d: int = 5, dq: int = 8, dx: int = 6, **kw: Any
) -> MoLSimilarity:
    torch.manual_seed(0)
    cfg = MoLConfig(
        query_dim=dq,
        item_dim=dx,
        num_query_embeddings=p_q,
        num_item_embeddings=p_x,
        component_dim=d,
        gate_hidden_dim=7,
        **kw,
    )
    return MoLSimilarity(cfg)


def test_single_pair_is_scaled_dot_product() -> None:
    sim = _sim(p_q=1, p_x=1, tau=0.05).eval()
    q, x = torch.randn(4, 8), torch.randn(9, 6)
    scores, aux = sim(q, x)
    fq = F.normalize(sim.query_proj(q), dim=-1)
    gx = F.normalize(sim.item_proj(x), dim=-1)
    torch.testing.assert_close(scores, fq @ gx.T / 0.05)
    assert aux == {}


def test_cosine_builder_is_exact_cosine() -> None:
    sim = MoLSimilarity.cosine(12, tau=0.5)
    q, x = torch.randn(3, 12), torch.randn(7, 12)
    scores, _ = sim(q, x)
    torch.testing.assert_close(scores, F.normalize(q, dim=-1) @ F.normalize(x, dim=-1).T / 0.5)
    # self-maximal: every item is its own best match
    s_self, _ = sim(x, x)
    assert torch.equal(s_self.argmax(dim=1), torch.arange(7))


def test_score_is_convex_mixture_of_component_logits() -> None:
    sim = _sim().eval()
    q, x = torch.randn(4, 8), torch.randn(10, 6)
    qs, xs = sim.encode_queries(q), sim.encode_items(x)
    dots = mol_component_dots(qs.components, xs.components)  # (B, N, P)
    scores, weights = sim.mix(dots, qs.gate, xs.gate)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 10))
    tau = sim.config.tau
    assert bool((scores <= dots.amax(-1) / tau + 1e-4).all())
    assert bool((scores >= dots.amin(-1) / tau - 1e-4).all())
    # pair p = i * P_x + j is <f_i(q), g_j(x)>
    torch.testing.assert_close(dots[1, 2, 1 * 3 + 2], qs.components[1, 1] @ xs.components[2, 2])


def _mol_score_by_hand(sim: MoLSimilarity, q: torch.Tensor, x: torch.Tensor) -> float:
    """phi(q, x) of one pair, written out from the formula with plain loops (Ding & Zhai, 2025):
    f_i(q), g_j(x) L2-normalised blocks of the projections; s_p = <f_i, g_j> for p = i * P_x + j;
    pi = softmax_p((W_s s + b_s)_p * silu(MLP_q(q)_p + MLP_x(x)_p)); phi = sum_p pi_p s_p / tau."""
    c = sim.config

    def mlp(gate: torch.nn.Module, v: torch.Tensor) -> list[float]:
        hidden = [F.silu(gate.inner.weight[h] @ v + gate.inner.bias[h]) for h in range(c.gate_hidden_dim)]
        return [float(sum(gate.outer.weight[p, h] * hidden[h] for h in range(c.gate_hidden_dim)) + gate.outer.bias[p])
                for p in range(c.num_pairs)]

    def blocks(proj: torch.nn.Linear, v: torch.Tensor, count: int) -> list[torch.Tensor]:
        out = []
        for i in range(count):
            rows = slice(i * c.component_dim, (i + 1) * c.component_dim)
            b = proj.weight[rows] @ v + (proj.bias[rows] if proj.bias is not None else 0.0)
            out.append(b / b.norm())
        return out

    f, g = blocks(sim.query_proj, q, c.num_query_embeddings), blocks(sim.item_proj, x, c.num_item_embeddings)
    s = [float(f[i] @ g[j]) for i in range(c.num_query_embeddings) for j in range(c.num_item_embeddings)]
    gq, gx = mlp(sim.query_gate, q), mlp(sim.item_gate, x)
    w, b = sim.dot_gate.weight, sim.dot_gate.bias
    logits = []
    for p in range(c.num_pairs):
        h = sum(float(w[p, r]) * s[r] for r in range(c.num_pairs)) + float(b[p])
        z = gq[p] + gx[p]
        logits.append(h * z / (1.0 + math.exp(-z)))  # silu(z) = z * sigmoid(z)
    top = max(logits)
    pi = [math.exp(v - top) for v in logits]
    return sum(pi_p / sum(pi) * s_p for pi_p, s_p in zip(pi, s, strict=True)) / c.tau


@pytest.mark.parametrize(("p_q", "p_x"), [(2, 3), (3, 1), (1, 1)])
def test_scores_follow_the_mol_formula_written_by_hand(p_q: int, p_x: int) -> None:
    """Every other MoL test compares two code paths, or checks properties any softmax gate has:
    this one pins the formula itself (a gate without the item MLP passed all of them)."""
    sim = _sim(p_q=p_q, p_x=p_x, tau=0.1).double().eval()
    with torch.no_grad():
        for param in sim.parameters():  # weights large enough that every term moves the score
            param.mul_(3.0)
        q, x = torch.randn(3, 8, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
        scores, _ = sim(q, x)
        want = torch.tensor([[_mol_score_by_hand(sim, q[b], x[n]) for n in range(4)] for b in range(3)],
                            dtype=torch.float64)
    torch.testing.assert_close(scores, want, rtol=1e-10, atol=1e-10)


def test_cached_paths_match_forward() -> None:
    sim = _sim().eval()
    q, x = torch.randn(5, 8), torch.randn(23, 6)
    ref, _ = sim(q, x)
    qs, xs = sim.encode_queries(q), sim.encode_items(x)
    for chunk in (1, 4, None):
        torch.testing.assert_close(sim.score_all(qs, xs, chunk_size=chunk), ref)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size must be an int >= 1 or None"):
            sim.score_all(qs, xs, chunk_size=bad)  # type: ignore[arg-type]
    rows = torch.randint(0, 23, (5, 6))
    torch.testing.assert_close(sim.score_candidates(qs, xs.select(rows)), ref.gather(1, rows))
    # per-query candidate features give the same numbers as gathered cached state
    cand_scores, _ = sim(q, x[rows])
    torch.testing.assert_close(cand_scores, ref.gather(1, rows))
    # a bf16 cache is cast per chunk and stays close
    half = xs.to(dtype=torch.bfloat16)
    torch.testing.assert_close(
        sim.score_all(qs, MoLItemState(half.components, xs.gate)), ref, atol=0.3, rtol=0.02
    )


def test_gradcheck_float64() -> None:
    sim = _sim(p_q=2, p_x=2, d=3, dq=4, dx=3).double().train()
    q = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)

    def fn(q: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, aux = sim(q, x)
        return scores, aux["mol_mi"]

    assert torch.autograd.gradcheck(fn, (q, x), eps=1e-6, atol=1e-5)
    xk = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, x: sim(q, x)[0], (q, xk), eps=1e-6, atol=1e-5)


def test_aux_loss_only_in_training_and_uses_positives() -> None:
    sim = _sim(mi_loss_weight=1e-3).train()
    q, x = torch.randn(4, 8), torch.randn(6, 6)
    _, aux = sim(q, x)
    assert set(aux) == {"mol_mi"} and aux["mol_mi"].dim() == 0
    _, aux_pos = sim(q, x, positives=torch.tensor([5, 4, 3, 2]))
    assert not torch.allclose(aux["mol_mi"], aux_pos["mol_mi"])
    assert sim.eval()(q, x)[1] == {}
    with pytest.raises(ValueError, match="positives"):
        sim.train()(q, x, positives=torch.tensor([0, 1, 2, 9]))
    with pytest.raises(ValueError, match="positives"):
        sim(q, x[:2])


def test_mi_loss_values() -> None:
    p = 4
    # every pair uses a different single logit: marginal uniform, conditional zero
    assert mol_mi_loss(torch.eye(p)).item() == pytest.approx(-math.log(p), abs=1e-6)
    # all pairs on the same logit: both entropies zero
    one = torch.zeros(5, p)
    one[:, 2] = 1
    assert mol_mi_loss(one).item() == pytest.approx(0.0, abs=1e-6)
    # uniform mixtures: -log P + log P = 0
    assert mol_mi_loss(torch.full((3, p), 1 / p)).item() == pytest.approx(0.0, abs=1e-6)


def test_softmax_dropout_only_in_training() -> None:
    sim = _sim(softmax_dropout=0.5)
    q, x = torch.randn(4, 8), torch.randn(6, 6)
    sim.eval()
    assert torch.equal(sim(q, x)[0], sim(q, x)[0])
    sim.train()
    torch.manual_seed(1)
    a = sim(q, x)[0]
    b = sim(q, x)[0]
    assert not torch.equal(a, b)


def test_config_round_trip_and_validation() -> None:
    cfg = MoLConfig(query_dim=3, item_dim=4)
    assert MoLConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.num_pairs == 16
    with pytest.raises(ValueError, match="tau"):
        MoLConfig(query_dim=3, item_dim=3, tau=0.0)
    with pytest.raises(ValueError, match="softmax_dropout"):
        MoLConfig(query_dim=3, item_dim=3, softmax_dropout=1.0)
    with pytest.raises(TypeError, match="component_dim"):
        MoLConfig(query_dim=3, item_dim=3, component_dim=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown MoLConfig keys"):
        MoLConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="identity_init"):
        MoLConfig(query_dim=3, item_dim=3, identity_init=True)


def test_input_validation_names_the_argument() -> None:
    sim = _sim()
    with pytest.raises(ValueError, match="query_features"):
        sim(torch.randn(2, 7), torch.randn(3, 6))
    with pytest.raises(ValueError, match="item_features"):
        sim(torch.randn(2, 8), torch.randn(3, 5))
    with pytest.raises(TypeError, match="query_features"):
        sim(torch.ones(2, 8, dtype=torch.long), torch.randn(3, 6))
    with pytest.raises(ValueError, match="item_features"):
        sim(torch.randn(2, 8), torch.randn(3, 4, 6))
    with pytest.raises(TypeError, match="config"):
        MoLSimilarity({"query_dim": 3})  # type: ignore[arg-type]
