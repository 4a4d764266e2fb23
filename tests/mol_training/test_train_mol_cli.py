"""``rag-relax train-mol`` on a tiny synthetic MovieLens folder: outputs, resume, errors."""

from __future__ import annotations

import json

import pytest
import torch

from rag_relax_plugins.cli import main
from rag_relax_plugins.training.mol_eval import score_all
from rag_relax_plugins.training.mol_recipes import load_recipe_model


@pytest.fixture
def tiny_movielens(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    t = 0
    for user in range(1, 9):
        start = int(torch.randint(1, 13, (1,), generator=g))
        for j in range(6):  # each user walks through items start, start+1, ... (mod 12)
            t += 1
            lines.append(f"{user}\t{(start + j - 1) % 12 + 1}\t4\t{t}")
    (folder / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    users += [f"{u}\t30\tF\tother\t00000" for u in range(1, 9)]
    (folder / "ml-100k.user").write_text("\n".join(users) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\tMovie {i}\t1995\tDrama" for i in range(1, 13)]
    (folder / "ml-100k.item").write_text("\n".join(items) + "\n")
    return folder


def _args(data, out, *extra):
    return ["train-mol", "--dataset", "movielens", "--data", str(data), "--output", str(out),
            "--epochs", "2", "--batch-size", "8", "--embedding-dim", "8", "--max-len", "3",
            "--num-query-embeddings", "2", "--num-item-embeddings", "2", "--num-negatives", "4",
            "--device", "cpu", "--no-progress", "--seed", "1", *extra]


def test_train_mol_writes_model_curve_metrics_and_resumes(tiny_movielens, tmp_path, capsys):
    full = tmp_path / "full"
    assert main(_args(tiny_movielens, full)) == 0
    assert "hr@10" in capsys.readouterr().out
    for name in ("model/config.json", "model/model.safetensors", "loss_curve.png", "metrics.json", "history.json"):
        assert (full / name).is_file(), name
    assert (full / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["steps"] == 8  # 8 users x 4 pairs, batches of 8, 2 epochs
    assert set(metrics["metrics"]) >= {"hr@10", "hr@50", "ndcg@10", "mrr"}

    part = tmp_path / "part"
    assert main(_args(tiny_movielens, part, "--max-steps", "3", "--save-every-steps", "1")) == 0
    assert main(_args(tiny_movielens, part, "--resume")) == 0
    resumed = json.loads((part / "metrics.json").read_text())
    assert resumed["metrics"] == metrics["metrics"]
    assert json.loads((part / "history.json").read_text())["step_loss"] == json.loads((full / "history.json").read_text())["step_loss"]

    model, meta = load_recipe_model(full / "model")
    assert meta["dataset"] == "movielens"
    assert score_all(model, torch.tensor([[1, 2, 3]])).shape == (1, 13)


def test_keep_checkpoints_option(tiny_movielens, tmp_path):
    """Only the newest 2 checkpoints were kept, with no option to change it (nor a word in --help)."""
    out = tmp_path / "k"
    assert main(_args(tiny_movielens, out, "--save-every-steps", "1", "--keep-checkpoints", "5")) == 0
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == [f"checkpoint_step_{s}" for s in (4, 5, 6, 7, 8)]
    assert main(_args(tiny_movielens, tmp_path / "bad", "--keep-checkpoints", "0")) == 2


def _dot_args(data, out, *extra):
    """:func:`_args` without the MoL-only options (refused with --similarity dot)."""
    args = _args(data, out, "--similarity", "dot", *extra)
    for flag in ("--num-query-embeddings", "--num-item-embeddings"):
        i = args.index(flag)
        del args[i : i + 2]
    return args


def test_train_mol_dot_baseline_and_errors(tiny_movielens, tmp_path, capsys):
    assert main(_dot_args(tiny_movielens, tmp_path / "dot")) == 0
    meta = json.loads((tmp_path / "dot" / "model" / "config.json").read_text())
    assert meta["recipe"]["similarity"] == "dot"
    assert main(_args(tiny_movielens, tmp_path / "bad", "--epochs", "0")) != 0
    assert "epochs" in capsys.readouterr().err
    assert main(_args(tmp_path / "nowhere", tmp_path / "bad2")) != 0
    assert "not found" in capsys.readouterr().err


def test_train_mol_user_embedding_interests_and_item_mlp(tiny_movielens, tmp_path, capsys):
    out = tmp_path / "user"
    assert main(_args(tiny_movielens, out, "--user-embedding", "--user-dropout", "0.3", "--num-interests", "2",
                      "--item-mlp-hidden", "4")) == 0
    meta = json.loads((out / "model" / "config.json").read_text())
    assert meta["num_users"] == 9  # user ids 1..8, id 0 = unknown
    assert meta["recipe"]["user_embedding"] is True and meta["recipe"]["user_dropout"] == 0.3
    assert meta["recipe"]["num_interests"] == 2 and meta["recipe"]["item_mlp_hidden"] == 4
    model, _ = load_recipe_model(out / "model")
    # queries are [user id, history]: (1, 1 + L)
    assert score_all(model, torch.tensor([[3, 1, 2, 3]])).shape == (1, 13)
    for flags in (["--user-embedding"], ["--embedding-dim", "32"], ["--encoder", "pool"], ["--max-len", "9"],
                  ["--warm-start-noise", "-1"], ["--num-interests", "2"], ["--user-dropout", "0.3"]):
        assert main(["train-mol", "--dataset", "hotpotqa", "--output", str(tmp_path / "hp"), *flags]) != 0
        err = capsys.readouterr().err
        assert flags[0] in err and "not used by --dataset hotpotqa" in err
    assert not (tmp_path / "hp").exists()  # rejected before anything is written
    assert main(_args(tiny_movielens, tmp_path / "nodrop", "--user-dropout", "0.2")) != 0
    assert "--user-dropout needs --user-embedding" in capsys.readouterr().err
    assert main(_args(tiny_movielens, tmp_path / "nodrop", "--user-dropout", "0.5")) != 0  # the default value too
    assert "--user-dropout needs --user-embedding" in capsys.readouterr().err
    assert not (tmp_path / "nodrop").exists()  # checked before the output folder is made
    assert main(_args(tiny_movielens, tmp_path / "cd0", "--component-dim", "0")) != 0  # meant "default", silently
    assert "component_dim must be an int >= 1" in capsys.readouterr().err
    # another width than the embedding's with the default warm start named recipe fields, not flags
    assert main(_args(tiny_movielens, tmp_path / "cd4", "--embedding-dim", "8", "--component-dim", "4")) != 0
    err = capsys.readouterr().err
    assert "--component-dim 4" in err and "--warm-start-noise -1" in err and not (tmp_path / "cd4").exists()


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        ("ml", ["--model", "/nowhere"], "--model is the sentence encoder"),
        ("dot", ["--num-query-embeddings", "3"], "--num-query-embeddings: MoL options"),
        ("dot", ["--mi-weight", "0.1", "--warm-start-noise", "0.3"], "--mi-weight, --warm-start-noise: MoL options"),
    ],
)
def test_options_the_run_would_ignore_are_refused_before_anything_is_written(
    tiny_movielens, tmp_path, capsys, make, extra, message
):
    out = tmp_path / "run"
    args = (_args if make == "ml" else _dot_args)(tiny_movielens, out, *extra)
    assert main(args) == 2  # was 0: the options were ignored
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_hotpot_dot_refuses_training_options(tmp_path, capsys):
    out = tmp_path / "hp"
    assert main(["train-mol", "--dataset", "hotpotqa", "--similarity", "dot", "--output", str(out), "--epochs", "3"]) == 2
    assert "--epochs: --dataset hotpotqa --similarity dot trains nothing" in capsys.readouterr().err
    assert not out.exists()


def test_resume_with_another_size_is_refused_and_keeps_the_checkpoint(tiny_movielens, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(tiny_movielens, out, "--max-steps", "2")) == 0
    ckpt = out / "checkpoints" / "checkpoint_step_2" / "model.safetensors"
    before = ckpt.read_bytes()
    args = _args(tiny_movielens, out, "--resume")
    args[args.index("--embedding-dim") + 1] = "16"  # every weight changes shape
    assert main(args) == 2  # was an uncaught RuntimeError from load_state_dict
    assert "cannot resume" in capsys.readouterr().err
    assert ckpt.read_bytes() == before


def test_refused_runs_leave_no_new_folder(tiny_movielens, tmp_path, capsys):
    """A missing --data or a bad model option failed after the output folder was made (left empty)."""
    assert main(_args(tmp_path / "nowhere", tmp_path / "a")) == 2
    assert main(_args(tiny_movielens, tmp_path / "b", "--tau", "0")) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    keep = tmp_path / "earlier"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert main(_args(tmp_path / "nowhere", keep)) == 2
    assert (keep / "notes.txt").read_text() == "mine"  # an existing folder is never removed


def test_resume_takes_a_checkpoint_path(tiny_movielens, tmp_path, capsys):
    """--resume was a flag only: an earlier checkpoint (e.g. before a divergence) could not be named."""
    full = tmp_path / "full"
    assert main(_args(tiny_movielens, full)) == 0
    part = tmp_path / "part"
    assert main(_args(tiny_movielens, part, "--max-steps", "3", "--save-every-steps", "1")) == 0
    # from step 2 (not the latest, step 3) into a new output folder: the same run as uninterrupted
    other = tmp_path / "other"
    assert main(_args(tiny_movielens, other, "--resume", str(part / "checkpoints" / "checkpoint_step_2"))) == 0
    history = json.loads((other / "history.json").read_text())["step_loss"]
    assert history == json.loads((full / "history.json").read_text())["step_loss"]
    assert main(_args(tiny_movielens, tmp_path / "x", "--resume", str(tmp_path / "nope"))) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.parametrize("noise", ["nan", "-inf", "inf"])
def test_a_non_finite_warm_start_noise_is_refused(tiny_movielens, tmp_path, capsys, noise):
    """-inf counted as "any negative value" (a random start) and nan reached the training (review)."""
    out = tmp_path / "run"
    assert main(_args(tiny_movielens, out, f"--warm-start-noise={noise}")) == 2
    assert "--warm-start-noise must be a finite number" in capsys.readouterr().err
    assert not out.exists()


def test_resume_with_another_warm_start_is_refused_naming_it(tiny_movielens, tmp_path, capsys):
    """The warm start only sets the first weights: a resume with another noise was accepted and
    the saved config recorded a value the weights never started from (review)."""
    out = tmp_path / "run"
    assert main(_args(tiny_movielens, out, "--max-steps", "2")) == 0
    capsys.readouterr()
    assert main(_args(tiny_movielens, out, "--resume", "--warm-start-noise", "0.9")) == 2
    assert "warm_start_noise (checkpoint 0.1, now 0.9)" in capsys.readouterr().err
    assert main(_args(tiny_movielens, out, "--resume")) == 0  # the same warm start resumes


def test_a_checkpoint_from_before_the_warm_start_was_recorded_still_resumes(tiny_movielens, tmp_path, capsys):
    """Checkpoints written before 2026-12-04 hold no model settings and a model hash computed
    without the warm start: they resume as before (the hash still leaves it out)."""
    out = tmp_path / "run"
    assert main(_args(tiny_movielens, out, "--max-steps", "2")) == 0
    state_file = out / "checkpoints" / "checkpoint_step_2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["signature"]["model_settings"]
    state_file.write_text(json.dumps(state))
    assert main(_args(tiny_movielens, out, "--resume")) == 0


def test_a_checkpoint_of_another_mi_weight_resumes_with_it(tiny_movielens, tmp_path, capsys):
    """MoLTrainConfig.mi_weight has no option (its default became 1.0 on 2026-12-02): a run
    checkpointed with 0 was refused, "mi_weight (checkpoint 0.0, now 1.0)", with no option to
    match it (compatibility review). A resume takes the checkpoint's."""
    out = tmp_path / "run"
    assert main(_args(tiny_movielens, out, "--max-steps", "2", "--save-every-steps", "1")) == 0
    for ck in (out / "checkpoints").iterdir():
        state_file = ck / "trainer_state.json"
        state = json.loads(state_file.read_text())
        state["config"]["mi_weight"] = 0.0
        state_file.write_text(json.dumps(state))
    capsys.readouterr()
    assert main(_args(tiny_movielens, out, "--resume")) == 0, capsys.readouterr().err
    from rag_relax_plugins.training.mol_checkpoint import latest_checkpoint

    last = latest_checkpoint(out / "checkpoints")
    assert last is not None and last.name != "checkpoint_step_2"  # it trained on
    assert json.loads((last / "trainer_state.json").read_text())["config"]["mi_weight"] == 0.0


def test_a_damaged_checkpoint_mi_weight_is_named_as_the_checkpoints(tiny_movielens, tmp_path, capsys):
    # NaN / -1 from the checkpoint were refused as if --mi-weight had set them (review)
    out = tmp_path / "run"
    assert main(_args(tiny_movielens, out, "--max-steps", "2")) == 0
    state_file = out / "checkpoints" / "checkpoint_step_2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["config"]["mi_weight"] = -1.0
    state_file.write_text(json.dumps(state))
    capsys.readouterr()
    assert main(_args(tiny_movielens, out, "--resume")) == 2
    assert "different options: mi_weight (checkpoint -1.0, now 1.0)" in capsys.readouterr().err
