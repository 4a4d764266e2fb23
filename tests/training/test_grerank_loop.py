"""G-Rerank training loop: gradient routing, learning from a reader signal, checkpoints and resume."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rerankers"))

from _gumbel_helpers import FakeReader, example, grerank_config, tiny_scorer

from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training.grerank import GRerankConfig, example_loss, train_grerank
from rag_relax_plugins.training.grerank_eval import evaluate_rankings, hotpot_split

EXAMPLES = [example(i) for i in range(6)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(minilm_path: str, seed: int = 0) -> GumbelReranker:
    return GumbelReranker(tiny_scorer(minilm_path, seed=seed), k=1, device="cpu", tau=0.5)


def cfg(tmp: Path, **kw: object) -> GRerankConfig:
    """A test config whose selection settings match :func:`make` (k=1, tau=0.5): the trainer
    applies the config's values to the reranker it is given."""
    base: dict[str, object] = {"k": 1, "tau": 0.5, **kw}
    config: GRerankConfig = grerank_config(tmp, **base)
    return config


def test_reader_loss_reaches_reranker_not_reader(minilm_path: str) -> None:
    r, reader = make(minilm_path), FakeReader()
    loss = example_loss(r, EXAMPLES[0], reader=reader, generator=torch.Generator().manual_seed(0))
    assert loss is not None
    loss.backward()
    grads = [p.grad for p in r.parameters()]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    assert reader.frozen.grad is None


def test_reader_signal_raises_gold_scores(minilm_path: str, tmp_path: Path) -> None:
    """With a reader that prefers paragraph 0, training moves it up the ranking."""
    r = make(minilm_path)

    def margin() -> float:  # gold score minus the mean of the others, averaged over questions
        s = torch.stack([r.score(e.question, e.paragraph_texts()) for e in EXAMPLES])
        return float((s[:, 0] - s[:, 1:].mean(dim=1)).mean())

    before = margin()
    train_grerank(cfg(tmp_path, epochs=2), examples=EXAMPLES, reranker=r, reader=FakeReader())
    assert margin() > before + 0.1
    assert (tmp_path / "curves.png").is_file() and (
        tmp_path / "final_model" / "config.json"
    ).is_file()
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist["loss"]) == 12


def _full_and_interrupted(minilm_path: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An uninterrupted run (its reranker) and the step-2 checkpoint of the same run stopped early."""
    full = make(minilm_path)
    train_grerank(cfg(tmp_path / "a"), examples=EXAMPLES, reranker=full, reader=FakeReader())
    part = make(minilm_path)
    train_grerank(
        cfg(tmp_path / "b", max_steps=2), examples=EXAMPLES, reranker=part, reader=FakeReader()
    )
    return full, tmp_path / "b" / "checkpoint_step_2"


def test_resume_reproduces_an_uninterrupted_run(minilm_path: str, tmp_path: Path) -> None:
    full, ckpt = _full_and_interrupted(minilm_path, tmp_path)
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "rng.safetensors").is_file()
    res = train_grerank(
        cfg(tmp_path / "b", resume_from=str(ckpt)), examples=EXAMPLES, reader=FakeReader()
    )
    resumed = GumbelReranker.from_pretrained(res.model_dir)
    q, docs = EXAMPLES[0].question, EXAMPLES[0].paragraph_texts()
    assert torch.allclose(resumed.score(q, docs), full.score(q, docs), atol=1e-5)
    assert len(res.history["loss"]) == 6


def test_supervised_reference_uses_labels(minilm_path: str, tmp_path: Path) -> None:
    r = make(minilm_path)
    res = train_grerank(
        cfg(tmp_path, supervision="labels", epochs=3), examples=EXAMPLES, reranker=r
    )
    assert res.history["loss"][-1] < res.history["loss"][0]


def test_examples_without_paragraphs_are_skipped(minilm_path: str) -> None:
    from dataclasses import replace

    empty = replace(EXAMPLES[0], paragraphs=())
    assert example_loss(make(minilm_path), empty, reader=FakeReader()) is None
    assert example_loss(make(minilm_path), replace(EXAMPLES[0], supporting_facts=())) is None


def test_a_step_without_signal_logs_no_loss(minilm_path: str, tmp_path: Path) -> None:
    from dataclasses import replace

    # one example per step; the second has no paragraphs, so its step has nothing to learn from
    data = [EXAMPLES[0], replace(EXAMPLES[1], paragraphs=()), EXAMPLES[2]]
    res = train_grerank(
        cfg(tmp_path, supervision="labels", epochs=1, grad_accum_steps=1),
        examples=data,
        reranker=make(minilm_path),
    )
    order = torch.randperm(3, generator=torch.Generator().manual_seed(0)).tolist()
    empty_step = order.index(1)
    assert res.history["loss"][empty_step] is None  # was 0.0, a perfect loss on the curve
    assert all(isinstance(v, float) for i, v in enumerate(res.history["loss"]) if i != empty_step)
    assert json.loads((tmp_path / "history.json").read_text())["loss"][empty_step] is None


def test_loss_curve_leaves_gaps_for_steps_without_loss(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from rag_relax_plugins.training.grerank_checkpoint import curve_series, plot_curves

    loss = [None if i % 7 == 0 else 1.0 / (i + 1) for i in range(40)]
    assert plot_curves({"loss": loss}, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0
    drawn, w, avg = curve_series({"loss": loss})
    assert w == 4 and avg is not None and avg.shape == (37,)
    assert [i for i, v in enumerate(drawn.tolist()) if math.isnan(v)] == [0, 7, 14, 21, 28, 35]  # gaps, not 0.0
    for start in range(37):  # each average: the mean of its window's known losses only
        known = [v for v in loss[start : start + w] if v is not None]
        assert avg[start].item() == pytest.approx(sum(known) / len(known))
    _, _, none_known = curve_series({"loss": [None] * 20})
    assert none_known is not None and bool(torch.isnan(none_known).all())


@pytest.mark.parametrize(
    "kw",
    [
        {"supervision": "answers"},
        {"epochs": 0},
        {"tau": 0.0},
        {"max_steps": 0},
        {"grad_accum_steps": True},
        {"cache_reader_states": True, "variant": "concatenated"},
        {"mode": "straight_through"},  # accepted by relaxed_topk, refused by from_pretrained
        {"weight_decay": -0.1},
        {"scorer_max_length": 4},
        {"trainable_layers": -2},
    ],
)
def test_config_validation(kw: dict) -> None:
    with pytest.raises(ValueError):
        GRerankConfig(**kw)


def test_config_round_trip() -> None:
    c = GRerankConfig(epochs=2, variant="concatenated")
    assert GRerankConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown"):
        GRerankConfig.from_dict({"epoch": 1})


def test_evaluate_rankings_per_type() -> None:
    res = evaluate_rankings(EXAMPLES[:2], [[0, 1, 2, 3], [1, 2, 3, 0]])
    assert res["all"]["recall@2"] == 0.5 and res["all"]["n"] == 2
    assert res["comparison"]["mrr"] == 1.0 and res["bridge"]["mrr"] == 0.25
    with pytest.raises(ValueError):
        evaluate_rankings(EXAMPLES[:2], [[0]])


def test_hotpot_split_is_fixed() -> None:
    train, test = hotpot_split(EXAMPLES, 4)
    assert [e.id for e in train] == ["x0", "x1", "x2", "x3"] and [e.id for e in test] == [
        "x4",
        "x5",
    ]
    with pytest.raises(ValueError):
        hotpot_split(EXAMPLES, 6)


def test_cli_command_is_registered() -> None:
    from rag_relax_plugins.cli import build_parser

    args = build_parser().parse_args(
        ["train-reranker", "-o", "x", "--max-steps", "3", "--variant", "concatenated"]
    )
    assert (
        args.command == "train-reranker" and args.max_steps == 3 and args.variant == "concatenated"
    )


def test_config_selection_settings_are_applied_to_a_passed_reranker(
    minilm_path: str, tmp_path: Path
) -> None:
    r = GumbelReranker(tiny_scorer(minilm_path), k=1, tau=0.5, kappa=1.0, device="cpu")
    seen: list[tuple[int, str, float, float, float]] = []
    orig = r.training_mask

    def spy(scores: torch.Tensor, **kw: object) -> torch.Tensor:
        m = orig(scores, **kw)  # type: ignore[arg-type]
        seen.append((r.k, r.mode, r.tau, r.kappa, float(m.detach().sum())))
        return m

    r.training_mask = spy  # type: ignore[method-assign]
    c = cfg(tmp_path, k=3, mode="subset", tau=4.0, kappa=8.0, max_steps=2)
    train_grerank(c, examples=EXAMPLES[:2], reranker=r, reader=FakeReader())
    assert seen and all(s[:4] == (3, "subset", 4.0, 8.0) for s in seen)
    assert all(abs(s[4] - 3.0) < 1e-4 for s in seen)  # subset masks sum to k
    logged = json.loads((tmp_path / "train_config.json").read_text())
    saved = json.loads((tmp_path / "final_model" / "config.json").read_text())
    for key in ("k", "mode", "tau", "kappa"):
        assert logged[key] == saved[key] == getattr(c, key)


def test_resume_with_a_fresh_reranker_loads_the_checkpoint_weights(
    minilm_path: str, tmp_path: Path
) -> None:
    full, ckpt = _full_and_interrupted(minilm_path, tmp_path)
    fresh = make(minilm_path, seed=1)  # different initial weights: they must be replaced
    res = train_grerank(
        cfg(tmp_path / "c", resume_from=str(ckpt)),
        examples=EXAMPLES,
        reranker=fresh,
        reader=FakeReader(),
    )
    q, docs = EXAMPLES[0].question, EXAMPLES[0].paragraph_texts()
    assert torch.allclose(fresh.score(q, docs), full.score(q, docs), atol=1e-5)
    resumed = GumbelReranker.from_pretrained(res.model_dir)
    assert torch.allclose(resumed.score(q, docs), full.score(q, docs), atol=1e-5)
    assert len(res.history["loss"]) == 6


def test_partial_last_accumulation_group_is_averaged_over_its_own_size(
    minilm_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two questions with grad_accum_steps=4 (one partial group of 2) give the same gradient as
    grad_accum_steps=2 (one full group of 2): both are the mean over the two questions."""
    norms: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def record(params: object, max_norm: float) -> torch.Tensor:
        total = clip(params, max_norm)  # type: ignore[arg-type]
        norms.append(float(total))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", record)
    for accum in (4, 2):
        train_grerank(
            cfg(tmp_path / str(accum), grad_accum_steps=accum),
            examples=EXAMPLES[:2],
            reranker=make(minilm_path),
            reader=FakeReader(),
        )
    assert len(norms) == 2 and norms[0] > 0
    assert abs(norms[0] - norms[1]) < 1e-5 * norms[1]


def test_k_covering_every_paragraph_warns_only_in_subset_mode(
    minilm_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """subset with k >= N gives an all-ones mask (no signal); l2x does not (its mask is a max over
    k draws), so the default mode is not warned about."""
    n = max(len(e.paragraphs) for e in EXAMPLES)
    with caplog.at_level("WARNING", logger="rag_relax_plugins.training.grerank"):
        train_grerank(cfg(tmp_path / "subset", k=n, mode="subset", max_steps=1), examples=EXAMPLES,
                      reranker=make(minilm_path), reader=FakeReader())
    assert f"k={n} keeps every paragraph" in caplog.text and "mode='subset'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="rag_relax_plugins.training.grerank"):
        res = train_grerank(cfg(tmp_path / "l2x", k=n, max_steps=2), examples=EXAMPLES,
                            reranker=make(minilm_path), reader=FakeReader())
    assert "keeps every paragraph" not in caplog.text
    assert any(v is not None and v > 0 for v in res.history["loss"])  # l2x with k = N still has a loss
    r = make(minilm_path)
    r.k = n
    mask = r.training_mask(torch.tensor([3.0, 0.0, -3.0, 1.0]), generator=torch.Generator().manual_seed(0))
    assert float(mask.min()) < 0.99  # l2x, k = N: not all ones


def test_mode_set_through_the_config_is_saved_loadable(minilm_path: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        cfg(tmp_path, mode="straight_through")
    res = train_grerank(cfg(tmp_path, mode="subset", max_steps=1), examples=EXAMPLES,
                        reranker=make(minilm_path), reader=FakeReader())
    assert GumbelReranker.from_pretrained(res.model_dir).mode == "subset"


def test_training_leaves_the_callers_global_rng_alone(minilm_path: str, tmp_path: Path) -> None:
    """train_grerank seeded (and on resume overwrote) the global generator: the caller's next
    random numbers changed (the MoL trainer forks the RNG for this reason)."""
    _, ckpt = _full_and_interrupted(minilm_path, tmp_path)
    for kw in ({}, {"resume_from": str(ckpt)}):
        reranker = None if kw else make(minilm_path)
        torch.manual_seed(123)
        want = torch.rand(3)
        torch.manual_seed(123)
        train_grerank(cfg(tmp_path / ("c" if not kw else "e"), **kw), examples=EXAMPLES, reranker=reranker,
                      reader=FakeReader())
        assert torch.equal(torch.rand(3), want), kw


def test_resume_on_another_device_type_reseeds_the_noise(minilm_path: str, tmp_path: Path, caplog) -> None:
    """Resuming with another device is allowed, but a CUDA generator state (16 bytes) does not fit a
    CPU generator (5,056 bytes): set_state raised after train_config.json was rewritten. The noise
    stream is reseeded instead, with a warning (simulated: a CUDA-sized state in a CPU checkpoint)."""
    from safetensors.torch import load_file, save_file

    _, ckpt = _full_and_interrupted(minilm_path, tmp_path)
    rng = load_file(str(ckpt / "rng.safetensors"))
    rng["gumbel"] = torch.zeros(16, dtype=torch.uint8)  # what a CUDA generator's get_state() holds
    save_file(rng, str(ckpt / "rng.safetensors"))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    state["noise_device"] = "cuda"
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    with caplog.at_level("WARNING"):
        res = train_grerank(cfg(tmp_path / "e", resume_from=str(ckpt)), examples=EXAMPLES, reader=FakeReader())
    assert len(res.history["loss"]) == 6 and "noise" in caplog.text and "cuda" in caplog.text
    again = train_grerank(cfg(tmp_path / "d", resume_from=str(ckpt)), examples=EXAMPLES, reader=FakeReader())
    assert again.history["loss"] == res.history["loss"]  # the reseeded stream is itself reproducible


def test_a_fresh_run_replaces_an_earlier_runs_checkpoints(minilm_path: str, tmp_path: Path) -> None:
    """A fresh run into a used output folder kept the earlier run's later checkpoints beside its own."""
    train_grerank(cfg(tmp_path), examples=EXAMPLES, reranker=make(minilm_path), reader=FakeReader())
    assert sorted(p.name for p in tmp_path.glob("checkpoint_step_*")) == ["checkpoint_step_4", "checkpoint_step_6"]
    train_grerank(cfg(tmp_path, max_steps=2), examples=EXAMPLES, reranker=make(minilm_path), reader=FakeReader())
    assert sorted(p.name for p in tmp_path.glob("checkpoint_step_*")) == ["checkpoint_step_2"]


def test_a_damaged_checkpoint_is_refused_naming_the_file(minilm_path: str, tmp_path: Path) -> None:
    """A missing generator state was a KeyError, and scorer weights that do not fit a raw
    RuntimeError; both are ValueErrors naming the file now. A passed reranker is left as it was
    by a refused resume: its weights were loaded first (and strict load_state_dict copies the keys
    that fit before it raises)."""
    from safetensors.torch import load_file, save_file

    _, ckpt = _full_and_interrupted(minilm_path, tmp_path)
    rng = load_file(str(ckpt / "rng.safetensors"))
    save_file({k: v for k, v in rng.items() if k != "torch"}, str(ckpt / "rng.safetensors"))
    with pytest.raises(ValueError, match=r"rng\.safetensors: no uint8 generator state 'torch'"):
        train_grerank(cfg(tmp_path / "e", resume_from=str(ckpt)), examples=EXAMPLES, reader=FakeReader())
    passed = make(minilm_path)
    before = {k: v.clone() for k, v in passed.scorer.state_dict().items()}

    def unchanged() -> bool:
        return all(torch.equal(v, before[k]) for k, v in passed.scorer.state_dict().items())

    with pytest.raises(ValueError, match=r"rng\.safetensors: no uint8 generator state 'torch'"):
        train_grerank(cfg(tmp_path / "e2", resume_from=str(ckpt)), examples=EXAMPLES, reranker=passed,
                      reader=FakeReader())
    assert unchanged()
    save_file(rng, str(ckpt / "rng.safetensors"))
    weights = ckpt / "reranker" / "model.safetensors"
    tensors = load_file(str(weights))
    save_file({**tensors, "head.weight": tensors["head.weight"][:, :-1].contiguous()}, str(weights))
    with pytest.raises(ValueError, match=r"model\.safetensors does not fit the reranker's scorer: 1 weight"):
        train_grerank(cfg(tmp_path / "f", resume_from=str(ckpt)), examples=EXAMPLES, reranker=passed,
                      reader=FakeReader())
    assert unchanged()
    save_file(tensors, str(weights))
    # a trainer_state.json missing a field the loop reads: a KeyError after the passed reranker
    # had taken the checkpoint's weights, and train_config.json written (review 2026-12-05)
    state_file = ckpt / "trainer_state.json"
    saved = json.loads(state_file.read_text())
    for field, bad in (("history", None), ("epoch", None), ("pos", None), ("history", {"loss": []})):
        state_file.write_text(json.dumps({k: v for k, v in saved.items() if k != field}
                                         | ({} if bad is None else {field: bad})))
        with pytest.raises(ValueError, match=rf"trainer_state\.json: '{field}' (is missing|must hold)"):
            train_grerank(cfg(tmp_path / "g", resume_from=str(ckpt)), examples=EXAMPLES, reranker=passed,
                          reader=FakeReader())
        assert unchanged() and not (tmp_path / "g").exists()


class _FakeMPSGenerator:
    """A CPU generator standing in for an MPS one (no MPS here): its device says "mps"."""

    device = torch.device("mps")

    def __init__(self) -> None:
        self.cpu = torch.Generator().manual_seed(3)

    def get_state(self) -> torch.Tensor:
        return self.cpu.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.cpu.set_state(state)

    def manual_seed(self, seed: int) -> None:
        self.cpu.manual_seed(seed)


def test_the_mps_dropout_generator_is_checkpointed(minilm_path: str, tmp_path: Path, monkeypatch) -> None:
    """Dropout on MPS draws from the MPS generator, which was not saved: a resume there was not
    bit-exact, though documented so for the same device type (review 2026-12-05; no MPS here)."""
    from rag_relax_plugins.training.grerank_checkpoint import load_checkpoint, save_checkpoint

    mps_state = torch.arange(16, dtype=torch.uint8)
    restored: list[torch.Tensor] = []
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda *a, **k: mps_state.clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda s, *a, **k: restored.append(s))
    reranker = make(minilm_path)
    opt = torch.optim.AdamW(reranker.scorer.parameters())
    state = {"epoch": 0, "pos": 1, "step": 1, "history": {"loss": [1.0], "seconds": [0.1]}}
    save_checkpoint(tmp_path / "ck", reranker=reranker, optimizer=opt, generator=_FakeMPSGenerator(), state=state)
    got = load_checkpoint(tmp_path / "ck", optimizer=opt, generator=_FakeMPSGenerator())
    assert got["step"] == 1 and len(restored) == 1 and torch.equal(restored[0], mps_state)


def test_a_cuda_state_saved_on_one_gpu_is_restored_on_another(minilm_path: str, tmp_path: Path, monkeypatch) -> None:
    """cuda:0 -> cuda:1 (same device type, documented bit-exact) found no "cuda1" state and skipped it."""
    from rag_relax_plugins.training.grerank_checkpoint import load_checkpoint, save_checkpoint

    gpu_state = torch.arange(16, dtype=torch.uint8)
    restored: list[tuple[torch.Tensor, object]] = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda *a, **k: gpu_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device=None: restored.append((s, device)))

    def fake(index: int) -> _FakeMPSGenerator:
        gen = _FakeMPSGenerator()
        gen.device = torch.device("cuda", index)  # type: ignore[misc]
        return gen

    reranker = make(minilm_path)
    opt = torch.optim.AdamW(reranker.scorer.parameters())
    state = {"epoch": 0, "pos": 1, "step": 1, "history": {"loss": [1.0], "seconds": [0.1]}}
    save_checkpoint(tmp_path / "ck", reranker=reranker, optimizer=opt, generator=fake(0), state=state)
    load_checkpoint(tmp_path / "ck", optimizer=opt, generator=fake(1))
    assert len(restored) == 1 and torch.equal(restored[0][0], gpu_state) and restored[0][1] == torch.device("cuda", 1)


def test_a_pos_past_the_epoch_is_refused_before_the_reranker_changes(minilm_path: str, tmp_path: Path) -> None:
    # a save writes (pos + 1) % n: pos 10**6 skipped the rest of the epoch's training (diff review)
    _, ckpt = _full_and_interrupted(minilm_path, tmp_path)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    state["pos"] = 10**6
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    fresh = make(minilm_path, seed=1)
    before = {k: v.clone() for k, v in fresh.scorer.state_dict().items()}
    with pytest.raises(ValueError, match=r"'pos' is 1000000, but an epoch has 6 examples"):
        train_grerank(cfg(tmp_path / "c", resume_from=str(ckpt)), examples=EXAMPLES, reranker=fresh,
                      reader=FakeReader())
    assert all(torch.equal(before[k], v) for k, v in fresh.scorer.state_dict().items())
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
