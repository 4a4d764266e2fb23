"""Which runs may write the figures of record, and which figures a bar is checked on: the G-Rerank
quality benchmark (issue 5) and the Gaussian benchmark (issue 4), their models, data and training
stubbed (the write paths and the bar decisions are the real ones)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- issue 5: rerankers


class _FakeReranker:
    """Stands in for the MiniLM scorers: the trained ones (``from_pretrained``) rank gold first."""

    def __init__(self, *args: Any, trained: bool = False, **kwargs: Any) -> None:
        self.trained = trained

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> _FakeReranker:
        return cls(trained=True)


def _rank(reranker: _FakeReranker, examples: list[Any]) -> list[list[int]]:
    n = len(examples[0].paragraphs)
    return [list(range(n)) if reranker.trained else list(range(n))[::-1] for _ in examples]  # gold = 0, 1


@pytest.fixture
def rq(results: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """bench_rerankers_quality with 500 synthetic questions and stubbed scorers and training;
    ``rq.trainings`` counts the training runs. ``results`` holds the recorded rerankers.json."""
    import bench_rerankers_quality as rq

    rows = [types.SimpleNamespace(question=f"q{i}", paragraphs=[f"p{j}" for j in range(10)], gold_indices=[0, 1],
                                  type=("bridge", "comparison")[i % 2]) for i in range(500)]
    trainings: list[int] = []

    def train(cfg: Any, examples: list[Any], reranker: Any) -> types.SimpleNamespace:
        trainings.append(len(examples))
        return types.SimpleNamespace(model_dir="m", seconds_per_example=0.1,
                                     history={"seconds": [0.1] * len(examples), "loss": [1.0]})

    monkeypatch.setattr(rq, "RESULTS", results)
    monkeypatch.setattr(rq, "load_hotpotqa_distractor", lambda: rows)
    monkeypatch.setattr(rq, "GumbelReranker", _FakeReranker)
    monkeypatch.setattr(rq, "rank_examples", _rank)
    monkeypatch.setattr(rq, "evaluate_reranker", lambda r, test: rq.evaluate_rankings(test, _rank(r, test)))
    monkeypatch.setattr(rq, "train_grerank", train)
    monkeypatch.setattr(rq, "_maxsim_rows", lambda *a: {"skipped": "stub"})
    monkeypatch.setattr(rq, "trainings", trainings, raising=False)
    (results / "rerankers.json").write_text(json.dumps({"recall2_grerank": 0.3987, "grerank_note": "recorded"}),
                                            encoding="utf-8")
    return rq


def _run(rq: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    argv = ["bench_rerankers_quality.py", *args, "--runs", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", argv)  # main() reads sys.argv
    return int(rq.main())


def test_rerankers_smoke_run_with_the_record_name_is_refused_before_training(
    rq: types.ModuleType, results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The docstring's old CPU smoke command rewrote rerankers_quality.json and rerankers.json."""
    before = _snapshot(results)
    assert _run(rq, tmp_path, monkeypatch, "--train-rows", "40", "--epochs", "1") == 2
    assert _snapshot(results) == before  # neither the file of record nor rerankers.json
    assert rq.trainings == []  # refused before any training
    assert "--no-write" in capsys.readouterr().out


@pytest.mark.parametrize("off_setting", [["--train-rows", "40"], ["--scorer", "bi"]])
def test_rerankers_off_setting_run_writes_only_its_own_name(
    rq: types.ModuleType, results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], off_setting: list[str],
) -> None:
    before = _snapshot(results)
    assert _run(rq, tmp_path, monkeypatch, *off_setting, "--epochs", "1", "--name", "rq_side") == 0
    after = _snapshot(results)
    assert set(after) == {*before, "rq_side.json"}  # its own file only
    assert after["rerankers.json"] == before["rerankers.json"]  # no merge
    out = capsys.readouterr().out
    assert "no bar checked: the bar is defined for the cross-encoder scorer on 400 training rows" in out


def test_rerankers_no_write_writes_nothing(
    rq: types.ModuleType, results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _snapshot(results)
    assert _run(rq, tmp_path, monkeypatch, "--train-rows", "40", "--epochs", "1", "--no-write") == 0
    assert rq.trainings == [40, 40]  # the smoke run did run (G-Rerank and supervised)
    assert _snapshot(results) == before


def test_rerankers_run_at_the_bar_setting_writes_the_record_and_checks_the_bar(
    rq: types.ModuleType, results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(rq, tmp_path, monkeypatch) == 0
    assert json.loads((results / "rerankers_quality.json").read_text(encoding="utf-8"))["train_rows"] == 400
    shared = json.loads((results / "rerankers.json").read_text(encoding="utf-8"))
    assert shared["recall2_grerank"] == 1.0 and "400 training rows" in shared["grerank_note"]  # merged
    assert "bar Recall@2 (d) G-Rerank - (c) before training: 1 >= 0.05: met" in capsys.readouterr().out


def test_rerankers_off_bar_setting() -> None:
    import bench_rerankers_quality as rq

    assert rq.off_bar_setting("cross", 400) is None
    assert "--scorer bi, 400 rows" in str(rq.off_bar_setting("bi", 400))
    assert "--scorer cross, 40 rows" in str(rq.off_bar_setting("cross", 40))


# --------------------------------------------------------------------------- issue 4: Gaussian

HEADLINE = "last2_unfrozen_150steps/sigreg"
UNFROZEN_ARGS = {"unfreeze_freeze": 4, "unfreeze_steps": 150, "unfreeze_lr": 5e-5, "unfreeze_isotropy": "sigreg",
                 "unfreeze_val": False}
BASE = 0.8338


def _metrics_dict(ndcg: float) -> dict[str, float]:
    return {"ndcg@10": ndcg, "recall@10": 0.93, "mrr": 0.85}


@pytest.fixture
def bg(results: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """bench_gaussian with its data, MiniLM features, head training, ANN and speed parts stubbed:
    the untrained MiniLM scores BASE, a frozen head BASE - 0.0005; the encode ratio is 0.99."""
    import bench_gaussian as bg

    data = {"corpus": {"t0": "p0", "t1": "p1"}, "queries": {"q0": "question"}, "qrels": {"q0": {"t0": 1}},
            "val_queries": {"v0": "val"}, "val_qrels": {"v0": {"t1": 1}}, "all_questions": ["question"],
            "train_items": [], "evidence_pairs": []}
    sn = {"corpus": {"s0": "premise"}, "queries": {"h0": "hypothesis"}, "qrels": {"h0": {"s0": 1}}}

    class Features:
        def __init__(self) -> None:
            self.index = {"p0": 0}

        def __call__(self, texts: Any) -> torch.Tensor:
            return torch.zeros(len(list(texts)), 4)

    def evaluate_head(head: Any, f: Any, data: Any, sn: Any, geometry: str) -> dict[str, Any]:
        base = isinstance(head, torch.nn.Identity) and geometry == "inner_product"
        return {"hotpot": _metrics_dict(BASE if base else BASE - 0.0005), "snli": {"recall@10": 0.8156},
                "diag": {"sigreg": 18.0, "effective_rank": 298.0}}

    def train_head(f: Any, data: Any, snli: Any, cfg: Any, args: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
        return torch.nn.Identity(), {"val_ndcg10_curve": [0.8], "best_epoch": 1, "steps": 1, "head_steps_per_s": 1.0}

    st_module = types.ModuleType("sentence_transformers")
    st_module.SentenceTransformer = lambda *a, **k: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", st_module)
    monkeypatch.setattr(bg, "RESULTS", results)
    monkeypatch.setattr(bg, "default_backbone_path", lambda: "minilm")
    monkeypatch.setattr(bg, "hotpot", lambda: data)
    monkeypatch.setattr(bg, "snli_test", lambda: sn)
    monkeypatch.setattr(bg, "snli_pairs", lambda n: [("h", "p")])
    monkeypatch.setattr(bg, "encode_cached", lambda st, path, texts: Features())
    monkeypatch.setattr(bg, "evaluate_head", evaluate_head)
    monkeypatch.setattr(bg, "train_head", train_head)
    monkeypatch.setattr(bg, "hnsw_recall", lambda *a, **k: 0.93)
    monkeypatch.setattr(bg, "speed", lambda *a: {"encode_overhead_ratio": 0.99})
    return bg


def _record_unfrozen(results: Path, ndcg10: float, name: str = "gaussian_unfrozen_cached_final") -> None:
    """A recorded unfrozen stage of the headline recipe (3 seeds at ``ndcg10``), as of 2026-11-23."""
    runs = [{"ndcg10": ndcg10, "recall10": 0.94, "mrr": 0.88, "snli_recall10": 0.81, "hnsw_recall10_ratio_ef16": 0.91,
             "hnsw_recall10_ratio_ef64": 0.98, "train_steps_per_s": 0.5, "sigreg": 39.0, "effective_rank": 305.0}] * 3
    (results / f"{name}.json").write_text(json.dumps({"args": UNFROZEN_ARGS, "runs": runs, "date": "2026-11-23"}),
                                          encoding="utf-8")


FROZEN_STAGE = ["--seeds", "1", "--variants", "sigreg", "--headline", HEADLINE,
                "--unfrozen-name", "gaussian_unfrozen_cached_final"]


@pytest.mark.parametrize("recorded_ndcg10", [0.70, 0.90])
def test_gaussian_frozen_stage_verdict_does_not_follow_a_recorded_file(
    bg: types.ModuleType, results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    recorded_ndcg10: float,
) -> None:
    """`make bench`'s frozen stage merged the recorded headline and checked the gain bar on
    (recorded trained - this run's base): a bar that followed a file from an earlier run."""
    _record_unfrozen(results, recorded_ndcg10)
    monkeypatch.setattr(sys, "argv", ["bench_gaussian.py", *FROZEN_STAGE])
    assert bg.main() == 0  # the speed bar (measured here) is met; the recorded gain has no bar
    out = capsys.readouterr().out
    assert "nDCG@10 gain" not in "\n".join(line for line in out.splitlines() if line.startswith("bar "))
    assert "bar encode time / bare sentence-transformers: 0.99x <= 1.1x: met" in out
    assert (f"trained model {HEADLINE}: recorded from gaussian_unfrozen_cached_final.json (2026-11-23), "
            "not re-measured") in out
    res = json.loads((results / "gaussian.json").read_text(encoding="utf-8"))
    assert res["hotpot_ndcg10_gain_points"] == pytest.approx(100 * (recorded_ndcg10 - BASE))  # still reported
    assert res["trained_model_recorded"]["files"] == ["gaussian_unfrozen_cached_final.json"]
    assert res["hotpot_ndcg10_gain_points_frozen_sigreg"] == pytest.approx(-0.05)


def test_gaussian_frozen_stage_without_headline_checks_the_gain_it_measured(
    bg: types.ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_gaussian.py", "--seeds", "1", "--variants", "sigreg", "--no-write"])
    assert bg.main() == 1  # the frozen SIGReg head, measured here: -0.05 points
    assert "bar HotpotQA nDCG@10 gain, trained - untrained (points): -0.05 >= 2: MISSED" in capsys.readouterr().out


def test_gaussian_merge_stage_checks_no_bar_on_recorded_figures(
    bg: types.ModuleType, results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _record_unfrozen(results, 0.90)
    monkeypatch.setattr(sys, "argv", ["bench_gaussian.py", *FROZEN_STAGE])
    assert bg.main() == 0
    _record_unfrozen(results, 0.70)  # a merge of a worse record: reported, not a verdict
    monkeypatch.setattr(sys, "argv", ["bench_gaussian.py", "--stage", "merge", "--headline", HEADLINE,
                                      "--unfrozen-name", "gaussian_unfrozen_cached_final"])
    assert bg.main() == 0
    out = capsys.readouterr().out
    assert "no bar checked: a merge measures nothing" in out and "not re-measured" in out


class _FakeEmbedder:
    """An untrained model whose backbone embeds every text as a fixed vector (no prefix cache)."""

    prefix_cache = None
    training = False
    device = torch.device("cpu")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.backbone = types.SimpleNamespace(encode=lambda texts, **k: torch.ones(len(texts), 4))

    def eval(self) -> _FakeEmbedder:
        return self

    def train(self, mode: bool = True) -> _FakeEmbedder:
        return self


@pytest.mark.parametrize(("trained", "status"), [(BASE + 0.03, 0), (BASE + 0.01, 1)])
def test_gaussian_unfrozen_stage_checks_the_gain_against_its_own_baseline(
    bg: types.ModuleType, results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    trained: float, status: int,
) -> None:
    """The unfrozen stage had no baseline and no bar: `make bench` now checks the gain there."""
    monkeypatch.setattr(bg, "GaussianEmbedder", _FakeEmbedder)
    monkeypatch.setattr(bg, "_metrics", lambda q, d, ids, qrels, geometry: _metrics_dict(BASE))  # the untrained model
    monkeypatch.setattr(bg, "unfrozen_run", lambda data, args, seed, model=None: {"ndcg10": trained, "recall10": 0.94})
    monkeypatch.setattr(sys, "argv", ["bench_gaussian.py", "--stage", "unfrozen", "--unfreeze-seeds", "2",
                                      "--unfreeze-no-snli", "--unfrozen-name", "unfrozen_check"])
    assert bg.main() == status
    written = json.loads((results / "unfrozen_check.json").read_text(encoding="utf-8"))
    assert written["hotpot_ndcg10_base"] == BASE
    assert written["hotpot_ndcg10_gain_points"] == pytest.approx(100 * (trained - BASE))
    assert ("met" if status == 0 else "MISSED") in capsys.readouterr().out


def test_gaussian_merge_prefers_the_baseline_recorded_with_the_trained_model(
    bg: types.ModuleType, results: Path,
) -> None:
    _record_unfrozen(results, 0.86)
    path = results / "gaussian_unfrozen_cached_final.json"
    rec = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**rec, "hotpot_ndcg10_base": 0.83}), encoding="utf-8")
    res: dict[str, Any] = {"hotpot_ndcg10_base": 0.80, "ablation": {}}
    bg.merge_unfrozen(res, [], "gaussian_unfrozen_cached_final", HEADLINE)
    assert res["hotpot_ndcg10_gain_points"] == pytest.approx(3.0)  # 0.86 - 0.83, both from that run
    assert "measured by the recorded unfrozen runs" in res["trained_model_recorded"]["gain_baseline"]
