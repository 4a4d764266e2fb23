"""HotpotQA loaders (Yang et al., EMNLP 2018; CC BY-SA 4.0) and an open-corpus view of them.

Files (under :func:`~rag_relax_plugins.datasets.paths.data_root`):
``hotpotqa/distractor_500.jsonl`` (question, answer, type, level, 10 context paragraphs
``[title, [sentences]]``, ``supporting_facts`` ``[[title, sent_id], ...]``) and
``hotpotqa/evidence_500.jsonl`` (question, answer, gold evidence sentences, type, level).

Note on the shared 500-row distractor file: in many rows one or both supporting-fact titles are
not among the context paragraphs (the gold paragraph is absent). :attr:`HotpotExample.gold_indices`
lists the gold paragraphs that are present, :attr:`HotpotExample.missing_gold_titles` the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_relax_plugins.datasets._io import check_limit, iter_jsonl, require_keys
from rag_relax_plugins.datasets.paths import data_root, require_file

__all__ = [
    "HotpotEvidence",
    "HotpotExample",
    "hotpot_open_corpus",
    "load_hotpotqa_distractor",
    "load_hotpotqa_evidence",
]

DISTRACTOR_FILE = Path("hotpotqa") / "distractor_500.jsonl"
EVIDENCE_FILE = Path("hotpotqa") / "evidence_500.jsonl"


def join_sentences(sentences: tuple[str, ...]) -> str:
    """Sentences joined by single spaces (HotpotQA sentences carry their own leading spaces)."""
    return " ".join(s.strip() for s in sentences if s.strip())


@dataclass(frozen=True)
class HotpotExample:
    """One HotpotQA distractor question.

    Attributes:
        id: the HotpotQA ``_id`` (or ``"line-N"`` when absent).
        question: the question text.
        answer: the gold answer string.
        type: ``"bridge"`` or ``"comparison"``.
        level: ``"easy"``, ``"medium"`` or ``"hard"``.
        paragraphs: context paragraphs as ``(title, sentences)``, in file order.
        supporting_facts: ``(title, sentence index)`` pairs.
    """

    id: str
    question: str
    answer: str
    type: str
    level: str
    paragraphs: tuple[tuple[str, tuple[str, ...]], ...]
    supporting_facts: tuple[tuple[str, int], ...]

    @property
    def titles(self) -> tuple[str, ...]:
        """Titles of the context paragraphs, in order."""
        return tuple(t for t, _ in self.paragraphs)

    @property
    def gold_titles(self) -> tuple[str, ...]:
        """Distinct supporting-fact titles, in order of first appearance."""
        return tuple(dict.fromkeys(t for t, _ in self.supporting_facts))

    @property
    def gold_indices(self) -> tuple[int, ...]:
        """Positions in :attr:`paragraphs` of the gold paragraphs that are present."""
        gold = set(self.gold_titles)
        return tuple(i for i, (t, _) in enumerate(self.paragraphs) if t in gold)

    @property
    def missing_gold_titles(self) -> tuple[str, ...]:
        """Supporting-fact titles with no paragraph in the context."""
        present = set(self.titles)
        return tuple(t for t in self.gold_titles if t not in present)

    def paragraph_text(self, i: int) -> str:
        """``"title: sentence sentence ..."`` of paragraph ``i``."""
        if not -len(self.paragraphs) <= i < len(self.paragraphs):
            raise IndexError(
                f"paragraph index {i} out of range for {len(self.paragraphs)} paragraphs"
            )
        title, sentences = self.paragraphs[i]
        return f"{title}: {join_sentences(sentences)}"

    def paragraph_texts(self) -> list[str]:
        """:meth:`paragraph_text` of every paragraph, in order."""
        return [self.paragraph_text(i) for i in range(len(self.paragraphs))]


@dataclass(frozen=True)
class HotpotEvidence:
    """One HotpotQA question with its gold evidence sentences only."""

    question: str
    answer: str
    evidence: tuple[str, ...]
    type: str
    level: str


def _resolve(path: str | os.PathLike[str] | None, default: Path, what: str) -> Path:
    """``path`` itself if given (a file, or a folder holding ``default``), else data_root()/default."""
    if path is None:
        return require_file(data_root() / default, what)
    p = Path(path)
    if p.is_dir():
        p = p / default if (p / default).is_file() else p / default.name
    return require_file(p, what)


def _str_field(obj: dict[str, Any], key: str, path: Path, lineno: int) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise ValueError(
            f"{path}: line {lineno} field {key!r} must be a string, got {type(value).__name__}"
        )
    return value


def _malformed(path: Path, lineno: int, field: str, expected: str, value: object) -> ValueError:
    """The error for a field of the wrong shape: file, line, field, expectation, value received."""
    got = f"{type(value).__name__} {value!r:.60}"  # the repr cut to 60 characters
    return ValueError(f"{path}: line {lineno} field {field} must be {expected}, got {got}")


def _parse_context(
    value: object, path: Path, lineno: int
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``context`` as ``((title, (sentence, ...)), ...)``; each entry must be ``[str, [str, ...]]``."""
    if not isinstance(value, list):
        raise _malformed(path, lineno, "'context'", "a list of [title, sentences] pairs", value)
    paragraphs = []
    for k, entry in enumerate(value):
        if not isinstance(entry, list) or len(entry) != 2:
            raise _malformed(path, lineno, f"'context'[{k}]", "a [title, sentences] pair", entry)
        title, sentences = entry
        if not isinstance(title, str):
            raise _malformed(path, lineno, f"'context'[{k}][0] (title)", "a string", title)
        if not isinstance(sentences, list):
            raise _malformed(
                path, lineno, f"'context'[{k}][1] (sentences)", "a list of strings", sentences
            )
        for j, sentence in enumerate(sentences):
            if not isinstance(sentence, str):
                raise _malformed(path, lineno, f"'context'[{k}][1][{j}]", "a string", sentence)
        paragraphs.append((title, tuple(sentences)))
    return tuple(paragraphs)


def _parse_facts(value: object, path: Path, lineno: int) -> tuple[tuple[str, int], ...]:
    """``supporting_facts`` as ``((title, sentence index), ...)``; each entry ``[str, int >= 0]``."""
    if not isinstance(value, list):
        raise _malformed(
            path, lineno, "'supporting_facts'", "a list of [title, sentence index] pairs", value
        )
    facts = []
    for k, entry in enumerate(value):
        if not isinstance(entry, list) or len(entry) != 2:
            raise _malformed(
                path, lineno, f"'supporting_facts'[{k}]", "a [title, sentence index] pair", entry
            )
        title, index = entry
        if not isinstance(title, str):
            raise _malformed(path, lineno, f"'supporting_facts'[{k}][0] (title)", "a string", title)
        # bool is a subclass of int, and a float such as 1.7 must not be truncated to 1
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise _malformed(
                path, lineno, f"'supporting_facts'[{k}][1] (sentence index)", "an int >= 0", index
            )
        facts.append((title, index))
    return tuple(facts)


def _parse_distractor(obj: dict[str, Any], path: Path, lineno: int) -> HotpotExample:
    require_keys(obj, ("question", "answer", "context", "supporting_facts"), path, lineno)
    if "_id" in obj and not isinstance(obj["_id"], str):
        raise _malformed(path, lineno, "'_id'", "a string", obj["_id"])
    return HotpotExample(
        id=obj.get("_id", f"line-{lineno}"),
        question=_str_field(obj, "question", path, lineno),
        answer=_str_field(obj, "answer", path, lineno),
        type=_str_field(obj, "type", path, lineno),
        level=_str_field(obj, "level", path, lineno),
        paragraphs=_parse_context(obj["context"], path, lineno),
        supporting_facts=_parse_facts(obj["supporting_facts"], path, lineno),
    )


def load_hotpotqa_distractor(
    path: str | os.PathLike[str] | None = None, limit: int | None = None
) -> list[HotpotExample]:
    """Load the HotpotQA distractor questions.

    Args:
        path: the JSONL file, or a folder holding ``hotpotqa/distractor_500.jsonl``; default
            ``data_root()`` (``$RAG_RELAX_DATA`` or ``../shared/data``).
        limit: keep the first ``limit`` rows.

    Raises:
        FileNotFoundError: no such file (the message names the path and ``RAG_RELAX_DATA``).
        ValueError: a file with no question (unless ``limit=0``), or a malformed line: not a JSON
            object, a missing field, a ``context`` entry
            that is not ``[title: str, sentences: list of str]``, a ``supporting_facts`` entry that
            is not ``[title: str, sentence index: int >= 0]``, or a non-string ``_id`` (the
            message names the file, the line number and the field).
    """
    limit = check_limit(limit)
    file = _resolve(path, DISTRACTOR_FILE, "HotpotQA distractor file")
    out = [_parse_distractor(obj, file, n) for n, obj in iter_jsonl(file, limit)]
    if not out and limit != 0:  # downstream errors ("train_size must be in [1, -1]") would not say why
        raise ValueError(f"{file} holds no questions (an empty or blank file)")
    return out


def load_hotpotqa_evidence(
    path: str | os.PathLike[str] | None = None, limit: int | None = None
) -> list[HotpotEvidence]:
    """Load the HotpotQA gold-evidence questions (same arguments and errors as the distractor loader)."""
    limit = check_limit(limit)
    file = _resolve(path, EVIDENCE_FILE, "HotpotQA evidence file")
    out = []
    for n, obj in iter_jsonl(file, limit):
        require_keys(obj, ("question", "answer", "evidence"), file, n)
        if not isinstance(obj["evidence"], list) or not all(
            isinstance(s, str) for s in obj["evidence"]
        ):
            raise ValueError(f"{file}: line {n} field 'evidence' must be a list of strings")
        out.append(
            HotpotEvidence(
                question=_str_field(obj, "question", file, n),
                answer=_str_field(obj, "answer", file, n),
                evidence=tuple(obj["evidence"]),
                type=_str_field(obj, "type", file, n),
                level=_str_field(obj, "level", file, n),
            )
        )
    if not out and limit != 0:  # hotpot_split(evidence=True) would add nothing, without a word
        raise ValueError(f"{file} holds no questions (an empty or blank file)")
    return out


def hotpot_open_corpus(
    examples: list[HotpotExample],
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """An open-corpus retrieval set over all unique paragraphs of ``examples``.

    Doc id = paragraph title; text = ``title + ": " + joined sentences`` (the first occurrence
    wins if a title repeats with different text). Query id = example id. Qrels give grade 1 to
    the gold titles that are in the corpus (gold paragraphs absent from every context cannot be
    retrieved and are left out; a query may then have empty qrels).

    Returns:
        ``(corpus, queries, qrels)``: ``{doc_id: text}``, ``{qid: question}``,
        ``{qid: {doc_id: 1}}``.

    Raises:
        ValueError: two examples share an id.
    """
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    for ex in examples:
        if ex.id in queries:
            raise ValueError(f"examples hold the id {ex.id!r} twice")
        queries[ex.id] = ex.question
        for i, (title, _) in enumerate(ex.paragraphs):
            corpus.setdefault(title, ex.paragraph_text(i))
    qrels = {ex.id: {t: 1 for t in ex.gold_titles if t in corpus} for ex in examples}
    return corpus, queries, qrels
