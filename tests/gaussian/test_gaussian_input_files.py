"""Input checks of the Gaussian data files: lone surrogate escapes, keys repeated in one JSON
object, blank eval queries, and the ``--kind documents`` hint of ``prepare-data``'s auto mode.

Each bad file is refused with its file and line before anything is written: earlier outputs of
``prepare_data`` survive, and ``train`` writes no ``train_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag_relax_plugins.cli import main
from rag_relax_plugins.training import gaussian_data
from rag_relax_plugins.training.gaussian_data import (
    Pair,
    load_eval_file,
    load_pairs,
    prepare_data,
    read_documents,
)
from rag_relax_plugins.training.gaussian_train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = [{"query": f"question {i}", "positive": f"Passage {i} answers question {i}."} for i in range(20)]
LONE = "\ud800"  # what JSON.stringify writes (escaped) for a text cut inside an emoji
OUTPUTS = ("train.jsonl", "val.jsonl", "test.jsonl", "eval.json")


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    # json.dumps escapes a lone surrogate as "\ud800", valid JSON, as JavaScript writes it
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _bad_rows(field: str = "query", row: int = 7) -> list[dict[str, str]]:
    rows = [dict(r) for r in ROWS]
    rows[row][field] = f"question {LONE} cut"  # the surrogate at position 9
    return rows


def _outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS if (folder / name).exists()}


# 1. lone surrogates ---------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["query", "positive", "negative"])
def test_a_lone_surrogate_in_a_pairs_jsonl_names_file_row_and_field(tmp_path: Path, field: str) -> None:
    rows = _bad_rows(field)
    rows[7].setdefault("negative", "Another passage.")
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError) as info:
        load_pairs(path)
    assert str(info.value) == (f"{path}:8: '{field}' is not valid Unicode text (a lone surrogate at position 9); "
                               "fix that row of the file")


def test_a_lone_surrogate_in_a_json_array_names_the_item(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in _bad_rows(row=2)) + "\n]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json:4: item 2: 'query' is not valid Unicode text \(a lone surrogate"):
        load_pairs(path)


def test_prepare_data_refuses_a_lone_surrogate_and_keeps_the_earlier_outputs(tmp_path: Path) -> None:
    rows = [dict(r) for r in ROWS]
    rows[7]["query"] = "question \U0001f600"  # json.dumps writes "\ud83d\ude00": a valid pair, one character
    rows[3]["positive"] = "Passage \u00e9t\u00e9"
    good = _jsonl(tmp_path / "good.jsonl", rows)
    assert "\\ud83d\\ude00" in good.read_text(encoding="utf-8")
    assert load_pairs(good)[7].query == "question \U0001f600"
    out = tmp_path / "out"
    paths = prepare_data(good, out)
    written = [p for name in ("train", "val", "test") for p in load_pairs(paths[name])]
    assert sorted(p.query for p in written) == sorted(r["query"] for r in rows)
    before = _outputs(out)
    assert len(before) == 4
    bad = _jsonl(tmp_path / "bad.jsonl", _bad_rows())
    with pytest.raises(ValueError, match=r"bad\.jsonl:8: 'query' is not valid Unicode text \(a lone surrogate at "
                                         r"position 9\); fix that row of the file"):
        prepare_data(bad, out, overwrite=True)
    assert _outputs(out) == before


def test_cli_prepare_data_names_the_row_and_keeps_the_earlier_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["prepare-data", str(_jsonl(tmp_path / "good.jsonl", ROWS)), "--output", str(out)]) == 0
    before = _outputs(out)
    bad = _jsonl(tmp_path / "bad.jsonl", _bad_rows())
    assert main(["prepare-data", str(bad), "--output", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:8: 'query' is not valid Unicode text (a lone surrogate at position 9)" in err
    assert "codec" not in err
    assert _outputs(out) == before


def test_prepare_data_builds_every_output_before_removing_the_earlier_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    good = _jsonl(tmp_path / "good.jsonl", ROWS)
    prepare_data(good, out)
    before = _outputs(out)
    # a text UTF-8 cannot hold that got past the readers (here: planted behind them)
    planted = [Pair(r["query"], r["positive"]) for r in ROWS]
    planted[5] = Pair("question " + LONE, planted[5].positive)
    monkeypatch.setattr(gaussian_data, "load_pairs", lambda _src: planted)
    with pytest.raises(UnicodeEncodeError):
        prepare_data(good, out, overwrite=True)
    assert _outputs(out) == before


def test_a_lone_surrogate_in_a_documents_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": f"Document {i}. It has two sentences."}) for i in range(5)]
    lines[3] = json.dumps({"text": f"Cut {LONE} here."})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_documents(path)
    assert str(info.value) == (f"{path}:4: 'text' is not valid Unicode text (a lone surrogate at position 4); "
                               "fix that row of the file")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"docs\.jsonl:4: 'text' is not valid Unicode"):
        prepare_data(path, out, kind="documents")
    assert not out.exists()


def test_train_refuses_a_lone_surrogate_before_writing_anything(tmp_path: Path) -> None:
    bad = _jsonl(tmp_path / "bad.jsonl", _bad_rows())
    cfg = TrainConfig(train_file=str(bad), output_dir=str(tmp_path / "run"), backbone="hashing:32", output_dim=8,
                      batch_size=4, num_slices=8, epochs=1, show_progress=False, device="cpu", save_checkpoints=False)
    with pytest.raises(ValueError, match=r"bad\.jsonl:8: 'query' is not valid Unicode text"):
        train(cfg)
    assert not (tmp_path / "run" / "train_config.json").exists()


def _eval(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("section, where", [("corpus", "corpus['d1']"), ("queries", "queries['q0']")])
def test_a_lone_surrogate_in_an_eval_text_is_refused(tmp_path: Path, section: str, where: str) -> None:
    data: dict[str, Any] = {"corpus": {"d0": "paris is in france", "d1": "berlin"},
                            "queries": {"q0": "capital of france"}, "qrels": {"q0": {"d0": 1}}}
    data[section]["q0" if section == "queries" else "d1"] = "ab" + LONE
    path = _eval(tmp_path / "eval.json", json.dumps(data))
    with pytest.raises(ValueError) as info:
        load_eval_file(path)
    assert str(info.value) == (f"{path}: {where} is not valid Unicode text (a lone surrogate at position 2); "
                               "fix that entry of the file")


# 2. repeated keys, blank eval queries ------------------------------------------------------------

@pytest.mark.parametrize("text, key", [
    ('{"corpus": {"d0": "paris", "d0": "berlin"}, "queries": {"q0": "capital"}, "qrels": {"q0": {"d0": 1}}}', "d0"),
    ('{"corpus": {"d0": "paris"}, "queries": {"q0": "a", "q0": "b"}, "qrels": {"q0": {"d0": 1}}}', "q0"),
    ('{"corpus": {"d0": "paris", "d1": "rome"}, "queries": {"q0": "a"}, "qrels": {"q0": {"d1": 0, "d1": 1}}}', "d1"),
])
def test_eval_ids_repeated_in_one_object_are_refused(tmp_path: Path, text: str, key: str) -> None:
    path = _eval(tmp_path / "eval.json", text)
    with pytest.raises(ValueError, match=rf"eval\.json: the id '{key}' appears twice in one object"):
        load_eval_file(path)


def test_a_repeated_eval_section_is_called_a_key(tmp_path: Path) -> None:
    path = _eval(tmp_path / "eval.json", '{"corpus": {"d0": "x"}, "queries": {"q0": "a"}, "qrels": {"q0": {"d0": 1}}, '
                                          '"corpus": {"d1": "y"}}')
    with pytest.raises(ValueError, match=r"eval\.json: the key 'corpus' appears twice in one object"):
        load_eval_file(path)


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_a_blank_eval_query_is_refused(tmp_path: Path, blank: str) -> None:
    data: dict[str, Any] = {"corpus": {"d0": "paris \U0001f600", "d1": blank}, "queries": {"q0": "capital"}, "qrels": {"q0": {"d0": 1}}}
    path = _eval(tmp_path / "eval.json", json.dumps(data))
    assert load_eval_file(path) == data  # a good file loads as before; a blank *document* stays allowed
    data["queries"]["q1"] = blank
    path = _eval(tmp_path / "eval.json", json.dumps(data))
    with pytest.raises(ValueError, match=r"eval\.json: queries\['q1'\] is blank; every query needs a text"):
        load_eval_file(path)


def test_a_field_repeated_in_a_pairs_jsonl_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"query": "q0", "positive": "p0"}\n{"query":"q1","positive":"p1","positive":"p9"}\n',
                    encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_pairs(path)
    assert str(info.value) == (f"{path}:2: the field 'positive' appears twice in one object (JSON would keep only "
                               "the last); fix that row of the file")


def test_a_field_repeated_in_a_json_array_item_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('[\n{"query": "q0", "positive": "p0"},\n{"query": "q1", "query": "q2", "positive": "p1"}\n]\n',
                    encoding="utf-8")
    with pytest.raises(ValueError, match=r"p\.json:3: item 1: the field 'query' appears twice in one object"):
        load_pairs(path)


def test_a_field_repeated_in_a_documents_jsonl_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "one"}\n\n{"text": "two", "text": "three"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"docs\.jsonl:3: the field 'text' appears twice in one object"):
        read_documents(path)


# 3. prepare-data --kind auto: the hint for documents ------------------------------------------------

HINT = "was read as pairs (--kind auto reads only .txt files and folders as documents): for documents pass " \
       "kind='documents' (--kind documents)"
DOCS = [f"Document {i} is about topic {i}. It has a second sentence on {i}." for i in range(10)]


def test_a_markdown_file_in_auto_mode_points_to_kind_documents(tmp_path: Path) -> None:
    src = tmp_path / "docs.md"
    src.write_text("\n\n".join(DOCS), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        prepare_data(src, tmp_path / "out")
    assert str(info.value) == f"{src}: unsupported extension '.md' (use .csv, .json or .jsonl); {src} {HINT}"
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError) as explicit:  # the kind was given: its error unchanged
        prepare_data(src, tmp_path / "out", kind="pairs")
    assert str(explicit.value) == f"{src}: unsupported extension '.md' (use .csv, .json or .jsonl)"
    paths = prepare_data(src, tmp_path / "out", kind="documents")
    assert len(load_eval_file(paths["eval"])["corpus"]) == 10
    # a .tsv of pairs is no document file either: no hint that read_documents would refuse (review)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("q\tp\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        prepare_data(tsv, tmp_path / "out3")
    assert str(info.value) == f"{tsv}: unsupported extension '.tsv' (use .csv, .json or .jsonl)"


def test_a_documents_jsonl_in_auto_mode_points_to_kind_documents(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": d}) + "\n" for i, d in enumerate(DOCS)), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        prepare_data(src, tmp_path / "out")
    assert str(info.value).startswith(f"{src}:1: unknown field(s) ['id', 'text']: a pair holds 'query', 'positive'")
    assert str(info.value).endswith(f"; {src} {HINT}")
    paths = prepare_data(src, tmp_path / "out", kind="documents")
    assert len(load_eval_file(paths["eval"])["corpus"]) == 10
    # another unknown field: the error keeps its wording (no hint)
    other = _jsonl(tmp_path / "p.jsonl", [{"query": "q", "positive": "p", "negatives": "n"}])
    with pytest.raises(ValueError) as info:
        prepare_data(other, tmp_path / "out2")
    assert str(info.value) == (f"{other}:1: unknown field(s) ['negatives']: a pair holds 'query', 'positive' and an "
                               "optional 'negative' (one string)")


def test_cli_prepare_data_of_a_markdown_file_names_kind_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.md"
    src.write_text("\n\n".join(DOCS), encoding="utf-8")
    assert main(["prepare-data", str(src), "--output", str(tmp_path / "d")]) == 2
    assert "(--kind documents)" in capsys.readouterr().err
    assert main(["prepare-data", str(src), "--output", str(tmp_path / "d"), "--kind", "documents"]) == 0
