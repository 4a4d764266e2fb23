"""G-Rerank options: init_from against scorer settings, a crash-left checkpoint, the CLI's options."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from _gumbel_helpers import FakeReader, example, grerank_config, tiny_scorer

from rag_relax_plugins.rerankers.gumbel import GumbelReranker
from rag_relax_plugins.training.grerank import GRerankConfig, GRerankResult, train_grerank

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = [example(i) for i in range(4)]


@pytest.fixture()
def init_folder(minilm_path: str, tmp_path: Path) -> Path:
    """A saved cross-encoder reranker (tiny scorer: max_length 64, every layer trainable)."""
    return GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu").save_pretrained(tmp_path / "init")


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"scorer": "bi"}, "scorer"),
        ({"backbone": "/does/not/exist"}, "backbone"),
        ({"scorer_max_length": 100}, "scorer_max_length"),
        ({"trainable_layers": 1}, "trainable_layers"),
    ],
)
def test_init_from_refuses_scorer_settings_it_would_ignore(
    init_folder: Path, tmp_path: Path, kw: dict, name: str
) -> None:
    """The saved folder decides the scorer; a different explicit value is an error, raised before
    anything is written (it used to be ignored and recorded in train_config.json as if used)."""
    out = tmp_path / "out"
    cfg = grerank_config(out, supervision="labels", init_from=str(init_folder), max_steps=1, k=1, **kw)
    with pytest.raises(ValueError, match=name):
        train_grerank(cfg, examples=EXAMPLES)
    assert not out.exists()


def test_init_from_records_the_scorer_settings_it_used(init_folder: Path, tmp_path: Path) -> None:
    """Defaults give way to the saved scorer; train_config.json records what was used."""
    cfg = grerank_config(tmp_path / "out", supervision="labels", init_from=str(init_folder), max_steps=1, k=1)
    assert cfg.scorer_max_length == 128  # the default, not the saved scorer's 64
    res = train_grerank(cfg, examples=EXAMPLES)
    logged = json.loads((tmp_path / "out" / "train_config.json").read_text())
    scorer = json.loads((res.model_dir / "scorer.json").read_text())
    assert (logged["scorer"], logged["scorer_max_length"], logged["trainable_layers"]) == ("cross", 64, -1)
    assert (scorer["kind"], scorer["max_length"], scorer["trainable_layers"]) == ("cross", 64, -1)
    assert logged["backbone"] is None and logged["init_from"] == str(init_folder)
    assert GRerankConfig.from_dict(logged).init_from == str(init_folder)  # the record is a valid config
    same = grerank_config(tmp_path / "again", supervision="labels", init_from=str(init_folder), max_steps=1, k=1,
                          scorer="cross", scorer_max_length=64, trainable_layers=-1)  # equal to the saved ones
    train_grerank(same, examples=EXAMPLES)
    assert json.loads((tmp_path / "again" / "train_config.json").read_text())["scorer_max_length"] == 64


def test_init_from_with_a_passed_reranker_is_refused(minilm_path: str, init_folder: Path, tmp_path: Path) -> None:
    r = GumbelReranker(tiny_scorer(minilm_path, seed=1), k=1, device="cpu")
    cfg = grerank_config(tmp_path / "out", supervision="labels", init_from=str(init_folder), max_steps=1, k=1)
    with pytest.raises(ValueError, match="init_from"):
        train_grerank(cfg, examples=EXAMPLES, reranker=r)
    assert not (tmp_path / "out").exists()


def test_resume_finds_a_checkpoint_left_between_the_two_renames(minilm_path: str, tmp_path: Path) -> None:
    """A crash while a checkpoint folder was replaced leaves ``.<name>.old-*``: the resume reads it."""
    full = GumbelReranker(tiny_scorer(minilm_path), k=1, tau=0.5, device="cpu")
    train_grerank(grerank_config(tmp_path / "a", k=1, tau=0.5), examples=EXAMPLES, reranker=full,
                  reader=FakeReader())
    train_grerank(grerank_config(tmp_path / "b", k=1, tau=0.5, max_steps=2), examples=EXAMPLES,
                  reranker=GumbelReranker(tiny_scorer(minilm_path), k=1, tau=0.5, device="cpu"), reader=FakeReader())
    ck = tmp_path / "b" / "checkpoint_step_2"
    os.replace(ck, tmp_path / "b" / ".checkpoint_step_2.old-abc123")
    res = train_grerank(grerank_config(tmp_path / "c", k=1, tau=0.5, resume_from=str(ck)), examples=EXAMPLES,
                        reader=FakeReader())
    q, docs = EXAMPLES[0].question, EXAMPLES[0].paragraph_texts()
    assert torch.allclose(GumbelReranker.from_pretrained(res.model_dir).score(q, docs), full.score(q, docs), atol=1e-5)


_ALIASES = {"output_dir": "output", "data_path": "data", "reader_path": "reader", "show_progress": "no_progress"}


def test_cli_has_an_option_for_every_config_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """docs/gumbel_reranker.md: the CLI takes the same options as GRerankConfig."""
    from rag_relax_plugins.cli import build_parser
    from rag_relax_plugins.training import grerank

    argv = ["train-reranker", "-o", str(tmp_path / "o"), "--scorer-max-length", "96", "--trainable-layers", "2",
            "--weight-decay", "0.01", "--max-grad-norm", "0.5", "--keep-checkpoints", "3"]
    args = build_parser().parse_args(argv)
    missing = [f.name for f in dataclasses.fields(GRerankConfig) if _ALIASES.get(f.name, f.name) not in vars(args)]
    assert missing == []
    seen: list[GRerankConfig] = []

    def fake_run(cfg: GRerankConfig) -> GRerankResult:
        seen.append(cfg)
        return GRerankResult(model_dir=Path(cfg.output_dir) / "final_model", history={"loss": [0.7, None, 0.5]},
                             seconds_per_example=0.1, examples_seen=3)

    monkeypatch.setattr(grerank, "train_grerank", fake_run)
    with caplog.at_level(logging.INFO, logger="rag_relax_plugins._cli.train_reranker"):
        assert args._run(args) == 0
    # the run says where its model went (it printed nothing)
    assert "this session trained on 3 examples; the run has 3 steps, last loss 0.50000; final model in" in caplog.text
    got = seen[0]
    assert (got.scorer_max_length, got.trainable_layers, got.weight_decay, got.max_grad_norm,
            got.keep_checkpoints) == (96, 2, 0.01, 0.5, 3)
    defaults = build_parser().parse_args(["train-reranker", "-o", "x"])
    seen.clear()
    defaults._run(defaults)
    want = GRerankConfig()
    for name in ("scorer_max_length", "trainable_layers", "weight_decay", "max_grad_norm", "keep_checkpoints"):
        assert getattr(seen[0], name) == getattr(want, name), name


def _init_from_checkpoint(init_folder: Path, tmp_path: Path) -> tuple[GRerankConfig, Path]:
    """An init_from run (default scorer settings: the saved folder's 64 word pieces are used)
    stopped at step 1, and its checkpoint."""
    cfg = grerank_config(tmp_path / "out", supervision="labels", init_from=str(init_folder), max_steps=1, k=1,
                         save_every_steps=1)
    train_grerank(cfg, examples=EXAMPLES)
    return cfg, tmp_path / "out" / "checkpoint_step_1"


def _options(ck: Path) -> dict:
    return json.loads((ck / "trainer_state.json").read_text())["config"]


def _scores(folder: Path) -> torch.Tensor:
    return GumbelReranker.from_pretrained(folder).score(EXAMPLES[0].question, EXAMPLES[0].paragraph_texts())


def test_init_from_checkpoint_resumes_with_the_original_or_the_recorded_config(
    init_folder: Path, tmp_path: Path
) -> None:
    """The checkpoint stores the settings train_config.json records (the saved scorer's); a resume
    with the original options or with that record continues the same run, and the resumed run's
    train_config.json records the scorer it trained (64 word pieces, not the default 128)."""
    cfg, ck = _init_from_checkpoint(init_folder, tmp_path)
    recorded = json.loads((tmp_path / "out" / "train_config.json").read_text())
    assert recorded["scorer_max_length"] == _options(ck)["scorer_max_length"] == 64
    original = dataclasses.replace(cfg, output_dir=str(tmp_path / "r1"), resume_from=str(ck), max_steps=2)
    train_grerank(original, examples=EXAMPLES)
    from_record = dataclasses.replace(GRerankConfig.from_dict(recorded), output_dir=str(tmp_path / "r2"),
                                      resume_from=str(ck), max_steps=2)
    train_grerank(from_record, examples=EXAMPLES)
    for run in ("r1", "r2"):
        logged = json.loads((tmp_path / run / "train_config.json").read_text())
        assert (logged["scorer"], logged["scorer_max_length"], logged["trainable_layers"]) == ("cross", 64, -1)
        assert logged["backbone"] is None
        assert _options(tmp_path / run / "checkpoint_step_2")["scorer_max_length"] == 64
    assert torch.equal(_scores(tmp_path / "r1" / "final_model"), _scores(tmp_path / "r2" / "final_model"))


def test_init_from_checkpoint_of_the_previous_format_resumes(init_folder: Path, tmp_path: Path) -> None:
    """Checkpoints written before the fix stored the options as given (scorer_max_length 128, the
    default, while the scorer used 64): they resume with the original command and with the
    recorded train_config.json."""
    cfg, ck = _init_from_checkpoint(init_folder, tmp_path)
    state = json.loads((ck / "trainer_state.json").read_text())
    state["config"].update(scorer_max_length=128)  # what the previous commit stored
    (ck / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    recorded = json.loads((tmp_path / "out" / "train_config.json").read_text())
    for run, base in (("r1", cfg), ("r2", GRerankConfig.from_dict(recorded))):
        train_grerank(dataclasses.replace(base, output_dir=str(tmp_path / run), resume_from=str(ck), max_steps=2),
                      examples=EXAMPLES)
        assert json.loads((tmp_path / run / "train_config.json").read_text())["scorer_max_length"] == 64
    assert torch.equal(_scores(tmp_path / "r1" / "final_model"), _scores(tmp_path / "r2" / "final_model"))


def test_resume_refuses_scorer_settings_the_checkpoint_would_ignore(init_folder: Path, tmp_path: Path) -> None:
    """On resume the checkpoint's reranker decides the scorer: a value other than its own, the
    recorded one or the default is refused before anything is written."""
    cfg, ck = _init_from_checkpoint(init_folder, tmp_path)
    bad = dataclasses.replace(cfg, output_dir=str(tmp_path / "r"), resume_from=str(ck), scorer_max_length=100)
    with pytest.raises(ValueError, match=r"scorer_max_length \(checkpoint 64, given 100\)"):
        train_grerank(bad, examples=EXAMPLES)
    assert not (tmp_path / "r").exists()


def test_refused_run_leaves_an_earlier_runs_train_config_untouched(minilm_path: str, tmp_path: Path) -> None:
    """train_config.json was written before the data was read: a refused run into an earlier run's
    folder rewrote it with options final_model/ was never trained with (and a new folder kept one)."""
    out = tmp_path / "run"
    train_grerank(grerank_config(out, k=1, max_steps=1), examples=EXAMPLES,
                  reranker=GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu"), reader=FakeReader())
    before = (out / "train_config.json").read_text()
    with pytest.raises(FileNotFoundError):
        train_grerank(grerank_config(out, k=1, data_path=str(tmp_path / "nope.jsonl")),
                      reranker=GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu"), reader=FakeReader())
    with pytest.raises(ValueError, match="no training examples"):
        train_grerank(grerank_config(tmp_path / "new", k=1), examples=[], reader=FakeReader())
    assert (out / "train_config.json").read_text() == before
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", ["learning_rate", "head_learning_rate", "tau", "kappa", "max_grad_norm"])
def test_infinite_rates_refused(name: str, tmp_path: Path) -> None:
    """learning_rate=inf passed the > 0 check and trained a model of NaN weights (rc 0 from the CLI)."""
    with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
        grerank_config(tmp_path, **{name: float("inf")})


def test_labels_supervision_names_the_reader_options_it_does_not_use(
    minilm_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="rag_relax_plugins.training.grerank"):
        train_grerank(grerank_config(tmp_path / "r", k=1, max_steps=1, supervision="labels", reader_path="nope",
                                     doc_tokens=16), examples=EXAMPLES,
                      reranker=GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu"))
    assert "trains without a reader: reader_path='nope', doc_tokens=16 not used" in caplog.text


def test_init_from_a_checkpoint_the_run_would_overwrite_is_refused(init_folder: Path, tmp_path: Path) -> None:
    """A fresh run into the folder of its init_from checkpoint wrote its own checkpoint_step_N over
    it (and then pruned it): the checkpoint it started from was lost (review)."""
    out = tmp_path / "out"
    train_grerank(grerank_config(out, supervision="labels", init_from=str(init_folder), max_steps=2, k=1,
                                 save_every_steps=1), examples=EXAMPLES)
    source = out / "checkpoint_step_2" / "reranker"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"init_from .* is inside .*checkpoint_step_2, which this run \(2 steps\)"):
        train_grerank(grerank_config(out, supervision="labels", init_from=str(source), max_steps=2, k=1,
                                     save_every_steps=1), examples=EXAMPLES)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # a run too short to reach step 2 keeps it: allowed
    train_grerank(grerank_config(out, supervision="labels", init_from=str(source), max_steps=1, k=1),
                  examples=EXAMPLES)
    assert (source / "scorer.json").is_file()


def test_a_passed_reranker_decides_the_scorer_and_other_explicit_values_are_refused(
    minilm_path: str, tmp_path: Path
) -> None:
    """A cross scorer (max_length 64, every layer trainable) passed with trainable_layers=0,
    scorer='bi', scorer_max_length=256 trained every layer and recorded bi/256/0 (review)."""
    out = tmp_path / "out"
    reranker = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu")
    cfg = grerank_config(out, supervision="labels", max_steps=1, k=1, scorer="bi", scorer_max_length=256,
                         trainable_layers=0)
    with pytest.raises(ValueError, match=r"the reranker passed decides the scorer.*scorer \(the reranker's "
                                         r"'cross', given 'bi'\).*scorer_max_length.*trainable_layers"):
        train_grerank(cfg, examples=EXAMPLES, reranker=reranker)
    assert not out.exists()
    train_grerank(grerank_config(out, supervision="labels", max_steps=1, k=1), examples=EXAMPLES, reranker=reranker)
    logged = json.loads((out / "train_config.json").read_text())
    assert (logged["scorer"], logged["scorer_max_length"], logged["trainable_layers"]) == ("cross", 64, -1)


@pytest.mark.usefixtures("diverging_adamw")
def test_a_diverged_grerank_run_says_so(minilm_path: str, tmp_path: Path) -> None:
    """A NaN weight after an update failed the next step with "scores contains NaN or inf values;
    pass a mask", which did not say the run diverged (review)."""
    reranker = GumbelReranker(tiny_scorer(minilm_path), k=1, device="cpu")
    with pytest.raises(ValueError, match=r"training diverged at step 1 \(a non-finite weight"):
        train_grerank(grerank_config(tmp_path / "out", supervision="labels", max_steps=2, k=1), examples=EXAMPLES,
                      reranker=reranker)
