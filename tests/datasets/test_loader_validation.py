"""Strict parsing of small hand-made HotpotQA and MovieLens files: bad values fail loudly.

Each malformed file here used to load silently (review of the loaders): a context string read as
a tuple of characters, a sentence index 1.7 truncated to 1, a null title turned into ``'None'``,
ids ``"2.7"`` truncated to 2, ratings ``nan``/``inf``, duplicate ids overwriting each other, and
interactions naming users or items absent from the tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag_relax_plugins.datasets import load_hotpotqa_distractor, load_movielens


def _hotpot_record(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "_id": "q1",
        "question": "q",
        "answer": "a",
        "type": "bridge",
        "level": "easy",
        "context": [["T", ["Hello world.", " Bye."]], ["U", ["Other."]]],
        "supporting_facts": [["T", 1], ["U", 0]],
    }
    record.update(fields)
    return record


def _write_hotpot(tmp_path: Path, bad: dict[str, Any]) -> Path:
    """A good record on line 1 and ``bad`` on line 2."""
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(_hotpot_record()) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    return path


def test_hotpot_valid_record_loads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(_hotpot_record()) + "\n", encoding="utf-8")
    (ex,) = load_hotpotqa_distractor(path)
    assert ex.id == "q1"
    assert ex.paragraphs == (("T", ("Hello world.", " Bye.")), ("U", ("Other.",)))
    assert ex.supporting_facts == (("T", 1), ("U", 0))
    assert ex.paragraph_text(0) == "T: Hello world. Bye."
    no_id = {k: v for k, v in _hotpot_record().items() if k != "_id"}
    path.write_text(json.dumps(no_id) + "\n", encoding="utf-8")
    assert load_hotpotqa_distractor(path)[0].id == "line-1"


@pytest.mark.parametrize(
    ("fields", "field_in_message"),
    [
        ({"context": [["T", "Hello world."]]}, r"'context'\[0\]\[1\] \(sentences\)"),
        ({"context": [[None, ["s."]]]}, r"'context'\[0\]\[0\] \(title\)"),
        ({"context": [["T", ["s.", 3]]]}, r"'context'\[0\]\[1\]\[1\]"),
        ({"context": [["T", ["s."], "extra"]]}, r"'context'\[0\]"),
        ({"context": {"T": ["s."]}}, r"'context'"),
        ({"context": ["Ti"]}, r"'context'\[0\]"),
        ({"supporting_facts": [["T", 1.7]]}, r"'supporting_facts'\[0\]\[1\] \(sentence index\)"),
        ({"supporting_facts": [["T", 1.0]]}, r"'supporting_facts'\[0\]\[1\]"),
        ({"supporting_facts": [["T", True]]}, r"'supporting_facts'\[0\]\[1\]"),
        ({"supporting_facts": [["T", "1"]]}, r"'supporting_facts'\[0\]\[1\]"),
        ({"supporting_facts": [["T", -1]]}, r"'supporting_facts'\[0\]\[1\]"),
        ({"supporting_facts": [["T", 0], [None, 0]]}, r"'supporting_facts'\[1\]\[0\] \(title\)"),
        ({"supporting_facts": [["T"]]}, r"'supporting_facts'\[0\]"),
        ({"supporting_facts": "T"}, r"'supporting_facts'"),
        ({"_id": None}, r"'_id'"),
    ],
    ids=[
        "sentences-a-string",
        "title-null",
        "sentence-not-str",
        "context-entry-of-3",
        "context-a-dict",
        "context-entry-a-string",
        "index-float-1.7",
        "index-float-1.0",
        "index-bool",
        "index-str",
        "index-negative",
        "fact-title-null",
        "fact-entry-of-1",
        "facts-a-string",
        "id-null",
    ],
)
def test_hotpot_malformed_field_names_file_line_and_field(
    tmp_path: Path, fields: dict[str, Any], field_in_message: str
) -> None:
    path = _write_hotpot(tmp_path, _hotpot_record(**fields))
    with pytest.raises(ValueError, match=rf"line 2 field {field_in_message}") as info:
        load_hotpotqa_distractor(path)
    assert str(path) in str(info.value)
    assert len(load_hotpotqa_distractor(path, limit=1)) == 1  # the good line alone still loads


_INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
_USERS = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
_ITEMS = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
_GOOD_USERS = "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n"
_GOOD_ITEMS = "1\tToy Story\t1995\tAnimation Comedy\n2\tGoldenEye\tunkonwn\tAction\n"


def _write_movielens(
    tmp_path: Path, inter: str, users: str = _GOOD_USERS, items: str = _GOOD_ITEMS
) -> Path:
    folder = tmp_path / "ml"
    folder.mkdir(exist_ok=True)
    (folder / "ml-100k.inter").write_text(_INTER + inter, encoding="utf-8")
    (folder / "ml-100k.user").write_text(_USERS + users, encoding="utf-8")
    (folder / "ml-100k.item").write_text(_ITEMS + items, encoding="utf-8")
    return folder


def test_movielens_valid_files_load_as_before(tmp_path: Path) -> None:
    folder = _write_movielens(tmp_path, "2\t1\t4\t300\n1\t2\t3.5\t100\n1\t1\t5\t 300 \n")
    ml = load_movielens(folder)
    rows = [tuple(r) for r in ml.interactions]  # by time, ties in file order
    assert rows == [(1, 2, 3.5, 100), (2, 1, 4.0, 300), (1, 1, 5.0, 300)]
    assert all(type(r.user) is int and type(r.timestamp) is int for r in ml.interactions)
    assert ml.users[2].age == 53 and ml.users[1].zip_code == "85711"
    assert ml.items[1].year == 1995 and ml.items[2].year == 0  # "unkonwn" year -> 0
    assert ml.items[1].genres == ("Animation", "Comedy")


@pytest.mark.parametrize(
    ("inter", "message"),
    [
        (
            "1\t1\t4\t100\n2.7\t1\t4\t101\n",
            r"ml-100k\.inter: line 3 field user_id must be an integer, got '2\.7'",
        ),
        ("1\t1\t4\t100\n1\t1.0\t4\t101\n", r"ml-100k\.inter: line 3 field item_id must be an integer"),
        ("1\t1\t4\t100\n1\t1\t4\t1e3\n", r"ml-100k\.inter: line 3 field timestamp must be an integer"),
        ("1\t1\t4\t100\n1\t1\t4\t101.5\n", r"ml-100k\.inter: line 3 field timestamp must be an integer"),
        ("1\t1\tnan\t100\n", r"ml-100k\.inter: line 2 field rating must be finite, got 'nan'"),
        ("1\t1\t4\t100\n1\t1\tinf\t101\n", r"ml-100k\.inter: line 3 field rating must be finite"),
        ("1\t1\t-Infinity\t100\n", r"ml-100k\.inter: line 2 field rating must be finite"),
        ("1\t1\tgood\t100\n", r"ml-100k\.inter: line 2 has a malformed rating 'good'"),
    ],
    ids=["user-2.7", "item-1.0", "time-1e3", "time-101.5", "nan", "inf", "-Infinity", "not-a-number"],
)
def test_movielens_bad_interaction_value(tmp_path: Path, inter: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_movielens(_write_movielens(tmp_path, inter))


def test_movielens_bad_integer_in_tables(tmp_path: Path) -> None:
    folder = _write_movielens(tmp_path, "1\t1\t4\t100\n", users="1\t24.5\tM\tx\t0\n")
    with pytest.raises(ValueError, match=r"ml-100k\.user: line 2 field age must be an integer"):
        load_movielens(folder)
    folder = _write_movielens(tmp_path, "1\t1\t4\t100\n", items="1.9\tToy Story\t1995\tComedy\n")
    with pytest.raises(ValueError, match=r"ml-100k\.item: line 2 field item_id must be an integer"):
        load_movielens(folder)


def test_movielens_duplicate_ids_in_tables(tmp_path: Path) -> None:
    users = _GOOD_USERS + "1\t30\tF\twriter\t00000\n"
    folder = _write_movielens(tmp_path, "1\t1\t4\t100\n", users=users)
    message = r"ml-100k\.user: line 4 repeats user_id 1 \(first on line 2\)"
    with pytest.raises(ValueError, match=message):
        load_movielens(folder)
    items = _GOOD_ITEMS + "2\tOther\t1996\tDrama\n"
    folder = _write_movielens(tmp_path, "1\t1\t4\t100\n", items=items)
    message = r"ml-100k\.item: line 4 repeats item_id 2 \(first on line 3\)"
    with pytest.raises(ValueError, match=message):
        load_movielens(folder)


def test_movielens_interactions_must_name_known_users_and_items(tmp_path: Path) -> None:
    # the unknown user is on line 3 although a later timestamp sorts it last
    folder = _write_movielens(tmp_path, "1\t1\t4\t100\n7\t1\t4\t900\n8\t1\t4\t50\n")
    message = r"ml-100k\.inter: line 3 has user_id 7, which is not in .*ml-100k\.user"
    with pytest.raises(ValueError, match=message):
        load_movielens(folder)
    folder = _write_movielens(tmp_path, "1\t1\t4\t100\n2\t9\t4\t101\n")
    message = r"ml-100k\.inter: line 3 has item_id 9, which is not in .*ml-100k\.item"
    with pytest.raises(ValueError, match=message):
        load_movielens(folder)


def test_snli_accepts_its_own_folder(tmp_path: Path) -> None:
    import gzip

    from rag_relax_plugins.datasets import load_snli

    folder = tmp_path / "snli"
    folder.mkdir()
    with gzip.open(folder / "snli_1.0_test.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}) + "\n")
    assert len(load_snli("test", path=tmp_path)) == 1  # the data root
    assert len(load_snli("test", path=folder)) == 1  # the snli folder itself


def test_movielens_accepts_one_of_its_files(tmp_path: Path) -> None:
    """The docs say a loader's path may be the file itself: any of the three names its folder."""
    folder = _write_movielens(tmp_path, "1\t1\t4\t100\n")
    for name in ("ml-100k.inter", "ml-100k.user", "ml-100k.item"):
        assert load_movielens(folder / name).interactions == load_movielens(folder).interactions
    (folder / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=r"notes\.txt is a file; MovieLens is read from the folder"):
        load_movielens(folder / "notes.txt")


@pytest.mark.parametrize(("pair_id", "expected"), [(None, ""), ("3416050480.jpg#4r1n", "3416050480.jpg#4r1n")])
def test_snli_pair_id_null_is_empty_not_the_string_none(tmp_path: Path, pair_id: object, expected: str) -> None:
    from rag_relax_plugins.datasets import load_snli

    row = {"sentence1": "a", "sentence2": "b", "gold_label": "neutral", "pairID": pair_id}
    (tmp_path / "t.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert load_snli("test", path=tmp_path / "t.jsonl")[0].pair_id == expected


def test_snli_pair_id_of_another_type_refused(tmp_path: Path) -> None:
    from rag_relax_plugins.datasets import load_snli

    row = {"sentence1": "a", "sentence2": "b", "gold_label": "neutral", "pairID": 17}
    (tmp_path / "t.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl: line 1 pairID must be a string, got 17"):
        load_snli("test", path=tmp_path / "t.jsonl")


def test_a_utf8_bom_is_read_as_the_text_encoding_it_is(tmp_path: Path) -> None:
    """A file saved by a Windows editor starts with a BOM: the Gaussian loaders read it, but the
    HotpotQA loader refused line 1 as invalid JSON and MovieLens its header."""
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps(_hotpot_record()) + "\n", encoding="utf-8")
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert load_hotpotqa_distractor(bom) == load_hotpotqa_distractor(plain)
    folder = _write_movielens(tmp_path, "2\t1\t4\t300\n1\t2\t3.5\t100\n")
    expected = load_movielens(folder).interactions
    for name in ("ml-100k.inter", "ml-100k.user", "ml-100k.item"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_movielens(folder).interactions == expected


def test_an_empty_hotpot_file_says_so(tmp_path: Path) -> None:
    """It loaded as no questions, and the commands then said "train_size must be an int in
    [1, -1]" or "is --limit 0?"."""
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no questions"):
        load_hotpotqa_distractor(path)
    assert load_hotpotqa_distractor(path, limit=0) == []
