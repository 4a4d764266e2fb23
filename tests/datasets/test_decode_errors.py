"""Undecodable input (bad UTF-8, broken gzip): a ValueError naming the file and the line."""

from __future__ import annotations

import gzip
import json

import pytest

from rag_relax_plugins.cli import main
from rag_relax_plugins.datasets import load_hotpotqa_evidence, load_movielens, load_snli
from rag_relax_plugins.training.gaussian_data import load_eval_file, load_pairs, read_documents

SNLI_ROW = {"gold_label": "entailment", "sentence1": "A man sleeps.", "sentence2": "A person rests.",
            "pairID": "p", "captionID": "c"}


def _snli_lines(n: int) -> bytes:
    return b"".join(json.dumps({**SNLI_ROW, "pairID": f"p{i}"}).encode() + b"\n" for i in range(n))


def test_truncated_and_fake_gzip(tmp_path) -> None:
    good = tmp_path / "ok.jsonl.gz"
    good.write_bytes(gzip.compress(_snli_lines(300)))
    assert len(load_snli("test", path=good)) == 300
    trunc = tmp_path / "trunc.jsonl.gz"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"trunc.jsonl.gz: line \d+: corrupt or truncated gzip"):
        load_snli("test", path=trunc)
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_bytes(_snli_lines(2))
    with pytest.raises(ValueError, match=r"fake.jsonl.gz: line 1: corrupt or truncated gzip"):
        load_snli("test", path=fake)


def test_invalid_utf8_names_its_line(tmp_path) -> None:
    row = json.dumps({"question": "q", "evidence": ["e"], "answer": "a", "type": "t", "level": "l"}).encode()
    ev = tmp_path / "ev.jsonl"
    ev.write_bytes(row + b"\n" + row + b"\n" + row.replace(b'"q"', b'"q\xff"') + b"\n")
    assert len(load_hotpotqa_evidence(ev, limit=2)) == 2
    with pytest.raises(ValueError, match=r"ev.jsonl: line 3: not valid UTF-8"):
        load_hotpotqa_evidence(ev)


def test_movielens_invalid_utf8(tmp_path) -> None:
    (tmp_path / "ml-100k.inter").write_bytes(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t1\n1\t2\t4\t2\n")
    (tmp_path / "ml-100k.user").write_bytes(b"user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\tx\t1\n")
    (tmp_path / "ml-100k.item").write_bytes(b"item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                             b"1\tToy Story\t1995\ta\n2\tCaf\xe9\t1995\tb\n")
    with pytest.raises(ValueError, match=r"ml-100k.item: line 3: not valid UTF-8"):
        load_movielens(tmp_path)


def test_gaussian_data_files_name_the_line(tmp_path, capsys) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'{"query": "q1", "positive": "p1"}\n{"query": "q\xe9", "positive": "latin-1 text"}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: not valid UTF-8"):
        load_pairs(pairs)
    docs = tmp_path / "docs.txt"
    docs.write_bytes(b"First document. Fine.\n\nSecond one.\nIt says caf\xe9.\n")
    with pytest.raises(ValueError, match=r"docs.txt:4: not valid UTF-8"):
        read_documents(docs)
    ev = tmp_path / "eval.json"
    ev.write_bytes(b'{"corpus": {"d": "\xff"}}')
    with pytest.raises(ValueError, match=r"eval.json:1: not valid UTF-8"):
        load_eval_file(ev)
    assert main(["prepare-data", str(pairs), "--output", str(tmp_path / "out")]) == 2
    assert "pairs.jsonl:2: not valid UTF-8" in capsys.readouterr().err
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"query": "q", "positive": "p"}\r\n')
    assert [p.query for p in load_pairs(bom)] == ["q"]
