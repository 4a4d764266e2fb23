"""What the Gaussian-embedder benchmark (``bench_gaussian.py``) reports from its results dict: the
quality table, the line naming where a merged ``--headline``'s figures were recorded, and issue
4's bars (trained-vs-untrained nDCG@10 gain, encode overhead)."""

from __future__ import annotations

from typing import Any

from _common import Bar

GAIN_BAR_POINTS = 2.0  # trained nDCG@10 - untrained nDCG@10, in points (x 100)
ENCODE_OVERHEAD_BAR = 1.10  # GaussianEmbedder.encode time / bare sentence-transformers
TABLE_HEADER = ("model", "seeds", "HotpotQA nDCG@10", "HotpotQA R@10", "SNLI R@10", "SIGReg", "eff. rank")


def table_rows(res: dict[str, Any]) -> list[tuple[str, ...]]:
    """The quality table from the results dict: base, then every ablation entry."""
    base = res["base"]
    rows: list[tuple[str, ...]] = [("MiniLM, cosine (untrained)", "-", f"{base['hotpot']['ndcg@10']:.4f}", f"{base['hotpot']['recall@10']:.4f}",
             f"{base['snli']['recall@10']:.4f}", f"{base['diag']['sigreg']:.1f}", f"{base['diag']['effective_rank']:.0f}")]
    for key, entry in res["ablation"].items():
        agg, n = entry["mean_std"], str(len(entry["runs"]))
        def cell(k: str, agg: dict[str, Any] = agg) -> str:
            return f"{agg[k][0]:.4f} ± {agg[k][1]:.4f}" if k in agg else "-"
        def one(k: str, fmt: str, agg: dict[str, Any] = agg) -> str:
            return format(agg[k][0], fmt) if k in agg else "-"
        if key.startswith("frozen/"):
            label = f"frozen backbone, isotropy={key.split('/')[1]}"
        else:
            a = entry["args"]
            label = (f"last {6 - a['unfreeze_freeze']} layers unfrozen, {a['unfreeze_steps']} steps, lr {a['unfreeze_lr']:g}, "
                     f"isotropy={a.get('unfreeze_isotropy', 'sigreg')}" + (", best epoch by val. loss" if a.get("unfreeze_val") else ""))
        rows.append((label, n, cell("ndcg10"), cell("recall10"), cell("snli_recall10"), one("sigreg", ".1f"), one("effective_rank", ".0f")))
    return rows


def recorded_headline(res: dict[str, Any]) -> str:
    """One line naming where a merged ``--headline``'s figures come from (``""`` when none was merged)."""
    rec = res.get("trained_model_recorded")
    if rec is None:
        return ""
    where = ", ".join(f"{f} ({d or 'undated'})" for f, d in zip(rec["files"], rec["dates"] or [None] * len(rec["files"]), strict=True))
    return (f"trained model {res['trained_model']}: recorded from {where}, not re-measured: HotpotQA nDCG@10 "
            f"{res['hotpot_ndcg10_trained_mean']:.4f}, {res['hotpot_ndcg10_gain_points']:+.2f} points over "
            f"{rec['gain_baseline']}; no bar checked on it here (the unfrozen stage checks it in one run)")


def gaussian_bars(res: dict[str, Any], *, quality: bool, speed: bool) -> list[Bar]:
    """Issue 4's bars on a results dict, for the sections this run computed.

    ``quality``: the trained-vs-untrained nDCG@10 gain was computed in this run
    (``hotpot_ndcg10_gain_points``, missed when absent); ``speed``: the encode timing was run
    (``encode_overhead_ratio``).
    """
    bars = []
    if quality:
        bars.append(Bar("HotpotQA nDCG@10 gain, trained - untrained (points)", res.get("hotpot_ndcg10_gain_points"),
                        ">=", GAIN_BAR_POINTS))
    if speed:
        bars.append(Bar("encode time / bare sentence-transformers", res.get("encode_overhead_ratio"),
                        "<=", ENCODE_OVERHEAD_BAR, "x"))
    return bars
