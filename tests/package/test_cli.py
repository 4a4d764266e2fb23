from __future__ import annotations

import pytest

from rag_relax_plugins.cli import build_parser, main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "rag-relax" in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    from rag_relax_plugins import __version__

    assert __version__ in capsys.readouterr().out


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices, "no sub-commands discovered"
    for name, p in sub.choices.items():
        assert p.description, f"{name} has no description"


@pytest.mark.parametrize("command", [["prepare-data", "in.txt"], ["train", "--train-file", "t.jsonl"],
                                     ["train-mol", "--dataset", "movielens"], ["train-maxsim"],
                                     ["train-reranker"]])
def test_an_output_that_is_a_file_is_a_clear_error(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep", encoding="utf-8")
    assert main([*command, "--output", "afile"]) == 2  # was a FileExistsError traceback
    err = capsys.readouterr().err
    assert "error: --output afile is an existing file" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "keep"


def test_evaluate_refuses_a_folder_as_output_before_evaluating(tmp_path, capsys):
    (tmp_path / "outdir").mkdir()
    assert main(["evaluate", "--model", str(tmp_path / "nomodel"), "--eval-file", "x.json",
                 "--output", str(tmp_path / "outdir")]) == 2
    assert "is a folder; give the path of the JSON file" in capsys.readouterr().err


def test_os_errors_are_reported_without_a_traceback(tmp_path, capsys, monkeypatch):
    import rag_relax_plugins._cli.prepare_data as prep

    def denied(args):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(prep, "run", denied)
    assert main(["prepare-data", "in.txt", "--output", str(tmp_path / "o")]) == 2
    assert "error: [Errno 13] Permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["prepare-data", "in.txt"], ["train", "--train-file", "t.jsonl"],
                                     ["train-mol", "--dataset", "movielens"], ["train-maxsim"],
                                     ["train-reranker"], ["evaluate", "--model", "m", "--eval-file", "e.json"]])
def test_an_empty_output_is_refused(command, tmp_path, capsys, monkeypatch):
    """``-o ""`` (an unset shell variable) wrote into the working folder, or (evaluate) nothing, exit 0."""
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--output", ""]) == 2
    assert "error: --output must not be empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_maxsim_refuses_a_cache_dir_that_is_a_file_before_loading_anything(tmp_path, capsys, monkeypatch):
    """It failed with a bare ``[Errno 17] File exists`` after the model had loaded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep", encoding="utf-8")
    assert main(["train-maxsim", "--output", "o", "--cache-dir", "afile"]) == 2
    assert "error: --cache-dir 'afile' must name a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_train_maxsim_evidence_names_where_it_is_read(tmp_path, capsys):
    """It said "pass its path explicitly, or set $RAG_RELAX_DATA", which no option and no variable fixes."""
    import shutil

    from rag_relax_plugins.datasets.paths import data_root

    data = tmp_path / "d.jsonl"
    shutil.copy(data_root() / "hotpotqa" / "distractor_500.jsonl", data)
    assert main(["train-maxsim", "--output", str(tmp_path / "o"), "--data", str(data), "--evidence"]) == 2
    assert f"evidence_500.jsonl from the folder of the data, and there is none in {tmp_path}: put it beside d.jsonl" \
        in capsys.readouterr().err
