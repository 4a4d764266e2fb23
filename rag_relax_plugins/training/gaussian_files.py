r"""Reading the Gaussian embedder's data files: training pairs, raw documents and ``eval.json``.

:func:`load_pairs` reads CSV (header ``query,positive[,negative]``), a JSON list or JSONL of
objects with ``query``, ``positive`` and an optional ``negative``; :func:`read_documents` reads raw
documents (a blank-line separated text file, a folder of ``.txt`` files, or JSONL ``text``);
:func:`load_eval_file` reads and checks an evaluation set. Malformed rows, bytes that are not
UTF-8, a text holding a lone surrogate escape (``"\ud83d"``: JavaScript's ``JSON.stringify``
writes one for a text cut inside an emoji; valid JSON, but no UTF-8 can hold it) and a key repeated
in one JSON object (``json`` would keep the last one silently) are ``ValueError``\ s naming the
file and line (never skipped). Preparation (synthetic pairs, the split, the outputs) is
:mod:`.gaussian_data`, which re-exports these names.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Pair", "load_eval_file", "load_pairs", "read_documents"]

log = logging.getLogger(__name__)

# what ``json`` leaves of a ``\uXXXX`` escape not in a valid high-low pair (a pair becomes one character)
_SURROGATE = re.compile("[\ud800-\udfff]")


class DocumentsNotPairs(ValueError):
    """A file that reads as documents rather than pairs: an unsupported extension or a ``text`` field."""


class _RepeatedKey(ValueError):
    """A key given twice in one JSON object (raised by :func:`_unique_keys`; callers name the place)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a repeated key, which ``json`` would resolve to the last value."""
    obj: dict[str, Any] = {}
    for key, value in items:
        if key in obj:
            raise _RepeatedKey(key)
        obj[key] = value
    return obj


def _check_unicode(text: str, what: str, where: str, part: str = "row") -> None:
    """Refuse a lone surrogate in ``text``, which any later UTF-8 write or tokenizer fails on without the file."""
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise ValueError(f"{where}: {what} is not valid Unicode text (a lone surrogate at position {bad.start()}); "
                         f"fix that {part} of the file")


@dataclass(frozen=True)
class Pair:
    """One training example: a query, its positive document, and an optional hard negative."""

    query: str
    positive: str
    negative: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"query": self.query, "positive": self.positive}
        if self.negative is not None:
            d["negative"] = self.negative
        return d


def _pair_from(obj: Any, where: str) -> Pair:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object with 'query' and 'positive', got {type(obj).__name__}")
    unknown = sorted(set(obj) - {"query", "positive", "negative"}, key=str)
    if unknown:  # "negatives" or a misspelt "neg" trained without the hard negatives, silently (a CSV's refused)
        error = DocumentsNotPairs if "text" in unknown else ValueError  # a document line: prepare_data hints --kind
        raise error(f"{where}: unknown field(s) {unknown}: a pair holds 'query', 'positive' and an optional "
                    "'negative' (one string)")
    q, p, n = obj.get("query"), obj.get("positive"), obj.get("negative")
    if not isinstance(q, str) or not q.strip():
        raise ValueError(f"{where}: 'query' must be a non-empty string, got {_shown(q)}")
    if not isinstance(p, str) or not p.strip():
        raise ValueError(f"{where}: 'positive' must be a non-empty string, got {_shown(p)}")
    if n is not None and (not isinstance(n, str) or not n.strip()):
        raise ValueError(f"{where}: 'negative' must be a non-empty string when present, got {n!r}")
    for name, text in (("query", q), ("positive", p), ("negative", n)):
        if text is not None:
            _check_unicode(text, repr(name), where)
    return Pair(q, p, n)


def _shown(value: Any) -> str:
    """A bad field for a message: a CSV's blank cell arrives as ``None``."""
    return "a missing or blank field" if value is None else repr(value)


def _csv_pairs(file: Path, text: str) -> list[Pair]:
    """Rows of a ``query,positive[,negative]`` CSV; quoted fields may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    limit = csv.field_size_limit()  # 131,072 characters by default: a long passage is a valid field
    csv.field_size_limit(max(limit, len(text) + 1))  # (process-wide; put back below)
    try:
        header = [h.strip().lower() for h in next(reader)]
        ok = header[:2] == ["query", "positive"] and (len(header) == 2 or header[2:] == ["negative"])
        if not ok:
            raise ValueError(f"{file}:1: header must be 'query,positive[,negative]', got {','.join(header)!r}")
        pairs: list[Pair] = []
        start = reader.line_num + 1
        for row in reader:
            where = f"{file}:{start}"
            start = reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line; a row of empty fields (" , ") is malformed, like in JSONL
            if len(row) != len(header):
                raise ValueError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(row)}")
            cells = [c if c.strip() else None for c in row]
            pairs.append(_pair_from(dict(zip(header, cells, strict=True)), where))
    except csv.Error as exc:
        raise ValueError(f"{file}:{reader.line_num}: malformed CSV ({exc})") from exc
    finally:
        csv.field_size_limit(limit)
    return pairs


def _jsonl_values(file: Path, text: str) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank JSONL line; invalid JSON or a repeated key names file and line."""
    # "\n" only (``_read_text`` has turned \r\n and \r into it): str.splitlines would also cut at
    # U+2028, U+0085, \x0c ... which json.dumps(ensure_ascii=False) leaves raw inside strings
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}:{lineno}: invalid JSON ({exc.msg})") from exc
        except _RepeatedKey as exc:
            raise ValueError(f"{file}:{lineno}: {_repeated(exc, 'field')}") from None
        yield lineno, value


def _repeated(exc: _RepeatedKey, what: str) -> str:
    return f"the {what} {exc.key!r} appears twice in one object (JSON would keep only the last); fix that row of the file"


def _jsonl_pairs(file: Path, text: str) -> list[Pair]:
    try:
        return [_pair_from(obj, f"{file}:{lineno}") for lineno, obj in _jsonl_values(file, text)]
    except ValueError:
        several = sum(1 for line in text.split("\n") if line.strip()) > 1
        whole = _one_json_value(text) if file.suffix.lower() == ".json" and several else None
        if whole is None:  # one line: its own error (an empty query ...) says what is wrong
            raise
        # a .json not starting with "[" that is one pretty-printed value: say so, not "invalid JSON"
        raise ValueError(f"{file}: one JSON {type(whole).__name__} over several lines; a .json file of pairs "
                         "is a JSON array of objects, or one object per line (JSONL)") from None


def _one_json_value(text: str) -> object | None:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _json_array_pairs(file: Path, text: str) -> list[Pair]:
    """Items of a JSON array, each reported with the line where it starts."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(data, list):
        raise ValueError(f"{file}:1: expected a JSON list of objects, got {type(data).__name__}")
    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)
    pos = text.index("[") + 1
    pairs = []
    for i in range(len(data)):
        while text[pos] in " \t\r\n,":
            pos += 1
        where = f"{file}:{text.count(chr(10), 0, pos) + 1}: item {i}"
        try:
            obj, end = decoder.raw_decode(text, pos)
        except _RepeatedKey as exc:
            raise ValueError(f"{where}: {_repeated(exc, 'field')}") from None
        pairs.append(_pair_from(obj, where))
        pos = end
    return pairs


def load_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Read pairs from ``.csv`` (header ``query,positive[,negative]``), ``.json`` or ``.jsonl``.

    A ``.json`` file holds a list of objects (or, if it does not start with ``[``, one object
    per line). Blank lines are ignored; every malformed row is an error naming the file and line.

    Raises:
        FileNotFoundError: missing file.
        ValueError: empty file, unknown extension or malformed row (with its line number): a
            missing or blank field, an unknown or repeated field, a lone surrogate in a text.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"pairs file not found: {file}")
    text = _read_text(file)
    if not text.strip():
        raise ValueError(f"{file} is empty")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        pairs = _csv_pairs(file, text)
    elif suffix == ".jsonl" or (suffix == ".json" and not text.lstrip().startswith("[")):
        pairs = _jsonl_pairs(file, text)
    elif suffix == ".json":
        pairs = _json_array_pairs(file, text)
    else:
        # the --kind documents hint only for what read_documents takes (a .tsv of pairs is not prose)
        error = ValueError if suffix in _NOT_PROSE else DocumentsNotPairs
        raise error(f"{file}: unsupported extension {suffix!r} (use .csv, .json or .jsonl)")
    if not pairs:
        raise ValueError(f"{file} holds no pairs")
    return pairs


def _read_text(file: Path) -> str:
    """The UTF-8 text of ``file`` (a leading BOM dropped, newlines as ``\\n``, like ``read_text``).

    Bad bytes are an error naming the file and line.
    """
    raw = file.read_bytes()
    body = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    try:
        return body.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise ValueError(f"{file}:{line}: not valid UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from exc


# suffixes of structured or compressed files, which read_documents would otherwise take for prose
_NOT_PROSE = frozenset({".json", ".csv", ".tsv", ".gz", ".bz2", ".xz", ".zst", ".zip", ".tar", ".parquet", ".arrow",
                        ".feather", ".xlsx", ".xls", ".pkl", ".pickle", ".npy", ".npz", ".pt", ".safetensors",
                        ".yaml", ".yml", ".xml", ".sqlite", ".db"})


def read_documents(path: str | os.PathLike[str]) -> list[str]:
    """Raw documents: a text file (blank-line separated), a folder of ``.txt``, or JSONL ``text``.

    A ``.jsonl`` file holds one object with a string ``text`` per line; any other file is read
    as blank-line separated prose (``.txt``, ``.md``, no extension ...), except the structured
    or compressed suffixes of ``_NOT_PROSE`` (``.json``, ``.csv``, ``.tsv``, ``.gz``,
    ``.parquet`` ...), whose rows would be taken for documents. Repeated documents are kept once
    (first occurrence): a copy would otherwise give the same positive in two splits.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a structured suffix, invalid UTF-8 or a malformed JSONL line (with its line
            number: no string ``text``, a repeated field, a lone surrogate), or no document.
    """
    src = Path(path)
    if src.is_dir():
        docs = [_read_text(f).strip() for f in sorted(src.glob("*.txt"))]
    elif not src.is_file():
        raise FileNotFoundError(f"documents not found: {src}")
    elif src.suffix.lower() == ".jsonl":
        docs = []
        for lineno, obj in _jsonl_values(src, _read_text(src)):
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f"{src}:{lineno}: expected an object with a string 'text'")
            _check_unicode(obj["text"], "'text'", f"{src}:{lineno}")
            docs.append(obj["text"].strip())
    elif src.suffix.lower() in _NOT_PROSE:
        raise ValueError(f"{src}: a {src.suffix} file is not prose; documents are a text file (blank-line "
                         "separated, e.g. .txt or .md), a folder of .txt or a .jsonl with 'text' (pairs: use --kind pairs)")
    else:
        docs = [d.strip() for d in re.split(r"\n\s*\n", _read_text(src))]
    found = [d for d in docs if d]
    docs = list(dict.fromkeys(found))
    if not docs:
        raise ValueError(f"{src} holds no documents")
    if len(docs) < len(found):
        log.warning("%s: %d repeated documents kept once (%d distinct)", src, len(found) - len(docs), len(docs))
    return docs


def load_eval_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check an ``eval.json`` (``corpus``, ``queries``, ``qrels``).

    Raises:
        FileNotFoundError: missing file.
        ValueError: invalid JSON or UTF-8, an id repeated in one object (JSON would keep the last),
            a missing or empty section, a text that is not a string, a blank query, a lone
            surrogate in a text, non-numeric grades, or qrels naming unknown documents or queries.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"evaluation file not found: {file}")
    try:
        data = json.loads(_read_text(file), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    except _RepeatedKey as exc:  # {"d0": "paris", "d0": "berlin"} evaluated one document, silently
        what = "key" if exc.key in ("corpus", "queries", "qrels") else "id"
        raise ValueError(f"{file}: the {what} {exc.key!r} appears twice in one object (JSON would keep only the "
                         "last); fix that entry of the file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected an object with 'corpus', 'queries' and 'qrels', got {type(data).__name__}")
    for key in ("corpus", "queries", "qrels"):
        if not isinstance(data.get(key), dict) or not data[key]:
            raise ValueError(f"{file}: '{key}' must be a non-empty object")
    for key in ("corpus", "queries"):
        bad = next((k for k, v in data[key].items() if not isinstance(v, str)), None)
        if bad is not None:
            raise ValueError(f"{file}: {key}[{bad!r}] must be a string (the text), got {type(data[key][bad]).__name__}")
        for id_, text in data[key].items():
            _check_unicode(text, f"{key}[{id_!r}]", str(file), "entry")
    blank = next((q for q, text in data["queries"].items() if not text.strip()), None)
    if blank is not None:  # it was embedded and averaged into the metrics (load_pairs refuses blank queries)
        raise ValueError(f"{file}: queries[{blank!r}] is blank; every query needs a text")
    for qid, rel in data["qrels"].items():
        if not isinstance(rel, dict) or not all(
            isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) for g in rel.values()
        ):
            raise ValueError(f"{file}: qrels[{qid!r}] must map document ids to numeric grades, e.g. {{\"d0\": 1}}")
    unknown = {d for rel in data["qrels"].values() for d in rel} - set(data["corpus"])
    if unknown:
        raise ValueError(f"{file}: qrels name documents missing from the corpus: {sorted(unknown)[:5]}")
    stray = set(data["qrels"]) - set(data["queries"])
    if stray:  # they were left out of the evaluation silently (the report's num_queries only said so)
        raise ValueError(f"{file}: qrels name queries missing from 'queries': {sorted(stray)[:5]}")
    return data  # type: ignore[no-any-return]
