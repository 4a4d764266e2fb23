"""The padded result of a search: the groups' outputs assembled with whole-batch tensor ops
(``_search._assemble``) equal the per-query loop it replaced (kept here as the reference)."""

from __future__ import annotations

import math

import torch

from rag_relax_plugins.index._search import _assemble


def _reference(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], b: int) -> tuple[torch.Tensor, list[list[int]]]:
    results: list[tuple[torch.Tensor, torch.Tensor]] = [(torch.empty(0), torch.empty(0))] * b
    for qidx, s, r in parts:
        for j, q in enumerate(qidx.tolist()):
            results[q] = (s[j], r[j])
    width = max(int((r >= 0).sum()) for _, r in results)
    scores = torch.full((b, width), -math.inf)
    out_rows: list[list[int]] = []
    for q, (s, r) in enumerate(results):
        valid = r >= 0
        scores[q, : int(valid.sum())] = s[valid][:width].float()
        out_rows.append(r[valid][:width].tolist())
    return scores, out_rows


def _group(qidx: list[int], width: int, g: torch.Generator, holes: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s = torch.randn(len(qidx), width, generator=g).sort(dim=1, descending=True).values
    r = torch.randint(0, 1_000, (len(qidx), width), generator=g)
    if width:
        cut = torch.randint(0, width + 1, (len(qidx),), generator=g)  # trailing misses
        miss = torch.arange(width) >= cut.unsqueeze(1)
        if holes:  # misses in the middle too (no strategy returns them, the assembly allows them)
            miss |= torch.rand(len(qidx), width, generator=g) < 0.2
        s, r = s.masked_fill(miss, -math.inf), r.masked_fill(miss, -1)
    return torch.tensor(qidx), s, r


def test_assembly_equals_the_per_query_loop_over_random_groups() -> None:
    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        b = int(torch.randint(1, 9, (1,), generator=g))
        perm = torch.randperm(b, generator=g).tolist()
        cuts = sorted(set(torch.randint(1, b + 1, (int(torch.randint(0, 3, (1,), generator=g)),), generator=g).tolist()) | {b})
        parts, start = [], 0
        for stop in cuts:
            width = int(torch.randint(0, 7, (1,), generator=g))
            parts.append(_group(perm[start:stop], width, g, holes=trial % 2 == 1))
            start = stop
        got_s, got_r = _assemble(parts, b, torch.device("cpu"))
        want_s, want_r = _reference(parts, b)
        assert got_r == want_r, trial
        assert got_s.dtype == torch.float32 and torch.equal(got_s, want_s), trial


def test_assembly_of_no_results_and_of_bf16_scores() -> None:
    empty = (torch.tensor([0, 1]), torch.empty(2, 0), torch.empty(2, 0, dtype=torch.long))
    s, r = _assemble([empty], 2, torch.device("cpu"))
    assert s.shape == (2, 0) and r == [[], []]
    half = (torch.tensor([0]), torch.tensor([[2.0, 1.0]], dtype=torch.bfloat16), torch.tensor([[5, 3]]))
    s, r = _assemble([half], 1, torch.device("cpu"))
    assert s.dtype == torch.float32 and s.tolist() == [[2.0, 1.0]] and r == [[5, 3]]
