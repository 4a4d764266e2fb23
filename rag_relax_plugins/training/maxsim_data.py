"""Training data for the MaxSim reranker, and a cache of frozen-backbone token vectors.

A :class:`QueryGroup` is one query with its candidate texts (row ids into a shared text table)
and which candidates are gold. HotpotQA distractor questions give groups of ~10 paragraphs with 2
gold ones and 8 distractors (natural hard negatives); the HotpotQA evidence file gives
(question, gold sentences) groups with a single candidate (in-batch negatives only).

When the backbone is frozen its token vectors never change, so :class:`TokenCache` computes them
once (batched, under inference mode) and stores them packed in ``float16`` (half the memory; the
projection runs in ``float32``). A cache file is named by a fingerprint of the encoder actually
used (class, model path, its own truncation length, seed and settings, trained-layer weights), the
marker, the config's ``max_seq_length`` and the texts, so a stale cache is not reused.
:func:`backbone_hidden_size` reads a local backbone's token vector size (the reranker's ``token_dim``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save

from rag_relax_plugins._io import atomic_write_bytes, read_json, read_tensors
from rag_relax_plugins.datasets.hotpotqa import HotpotEvidence, HotpotExample
from rag_relax_plugins.embedders.base import encoder_settings
from rag_relax_plugins.rerankers.maxsim import MaxSimReranker, PackedTokens

__all__ = [
    "HotpotSplit",
    "QueryGroup",
    "TextTable",
    "TokenCache",
    "backbone_hidden_size",
    "check_groups",
    "evidence_groups",
    "hotpot_groups",
    "hotpot_split",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueryGroup:
    """One query and its candidates.

    Attributes:
        query: row of the query in the query table.
        candidates: rows of the candidate texts in the text table, in data order.
        gold: positions in ``candidates`` of the gold (positive) texts.
        type: question type (``"bridge"``, ``"comparison"``, ``"evidence"``...).
    """

    query: int
    candidates: tuple[int, ...]
    gold: tuple[int, ...]
    type: str = ""


def _index(value: object, size: int) -> bool:
    """``value`` is an integer (numpy's included, ``bool`` not) in ``[0, size)``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= int(value) < size


def check_groups(
    name: str, groups: Sequence[QueryGroup], num_queries: int, num_texts: int, *, require_gold: bool = True
) -> None:
    """Refuse a group the trainer cannot use, naming it: not a :class:`QueryGroup`, a query or
    candidate row outside the tables (``num_queries`` / ``num_texts`` rows), no candidates, no
    gold (unless ``require_gold`` is false: validation leaves such a question out of its MRR), or
    a gold position outside its candidates.

    Raises:
        TypeError / ValueError: ``"<name>[i]: ..."``.
    """
    for i, g in enumerate(groups):
        where = f"{name}[{i}]"
        if not isinstance(g, QueryGroup):
            raise TypeError(f"{where} must be a QueryGroup, got {type(g).__name__}")
        if not _index(g.query, num_queries):
            raise ValueError(f"{where}: query row {g.query!r} is not a row of the {num_queries} query strings")
        for field in ("candidates", "gold"):  # a numpy array failed with "truth value ... ambiguous"
            if not isinstance(getattr(g, field), (tuple, list)):
                raise TypeError(f"{where}: {field} must be a tuple of ints, got {type(getattr(g, field)).__name__}")
        if not g.candidates:
            raise ValueError(f"{where}: no candidates")
        bad = [c for c in g.candidates if not _index(c, num_texts)]
        if bad:
            raise ValueError(f"{where}: candidate row {bad[0]!r} is not a row of the {num_texts} text strings")
        if require_gold and not g.gold:
            raise ValueError(f"{where}: no gold candidate (a group needs at least one positive)")
        bad = [j for j in g.gold if not _index(j, len(g.candidates))]
        if bad:
            raise ValueError(f"{where}: gold position {bad[0]!r} is outside its {len(g.candidates)} candidates")


def _check_packed(packed: PackedTokens, n: int, dim: int) -> None:
    """Refuse cached token vectors that cannot be ``n`` texts' ``dim``-d tokens (a damaged or
    foreign file: half-width rows or broken offsets failed later, in training, or were used)."""
    tokens, offsets = packed.tokens, packed.offsets
    if offsets.dim() != 1 or offsets.numel() != n + 1 or offsets.is_floating_point():
        raise ValueError(f"offsets of shape {tuple(offsets.shape)} for {n} texts")
    if tokens.dim() != 2 or tokens.shape[1] != dim or not tokens.is_floating_point():
        raise ValueError(f"token vectors {tokens.dtype} {tuple(tokens.shape)}, expected (T, {dim}) floats")
    if int(offsets[0]) != 0 or int(offsets[-1]) != tokens.shape[0] or bool((offsets[1:] < offsets[:-1]).any()):
        raise ValueError(f"offsets do not split the {tokens.shape[0]} token rows")


class TextTable:
    """Unique strings with stable row ids (first occurrence order)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._rows: dict[str, int] = {}

    def add(self, text: str) -> int:
        """Row of ``text`` (added when new)."""
        row = self._rows.get(text)
        if row is None:
            row = self._rows[text] = len(self.texts)
            self.texts.append(text)
        return row

    def __len__(self) -> int:
        return len(self.texts)


def hotpot_groups(
    examples: Sequence[HotpotExample], queries: TextTable, texts: TextTable, *, skip_no_gold: bool = True
) -> list[QueryGroup]:
    """Groups from HotpotQA distractor questions (candidates = the context paragraphs).

    Args:
        examples: distractor questions.
        queries, texts: tables the question and paragraph strings are added to.
        skip_no_gold: leave out questions none of whose gold paragraphs is in the context.
    """
    out = []
    for ex in examples:
        gold = ex.gold_indices
        if skip_no_gold and not gold:
            continue
        cands = tuple(texts.add(t) for t in ex.paragraph_texts())
        out.append(QueryGroup(queries.add(ex.question), cands, tuple(gold), ex.type))
    return out


def evidence_groups(items: Sequence[HotpotEvidence], queries: TextTable, texts: TextTable) -> list[QueryGroup]:
    """Groups from HotpotQA evidence rows: the joined gold sentences are the only candidate."""
    out = []
    for ev in items:
        passage = " ".join(s.strip() for s in ev.evidence if s.strip())
        if passage:
            out.append(QueryGroup(queries.add(ev.question), (texts.add(passage),), (0,), "evidence"))
    return out


def _fingerprint(reranker: MaxSimReranker, marker: str, texts: Sequence[str]) -> str:
    """Key of the vectors of ``texts``: the encoder actually used (class, model path, effective
    truncation length, seed and other settings), the weights of any trained backbone layers, the
    marker, the config's length and token size, and the texts."""
    h = hashlib.sha256()
    meta = {
        "encoder": encoder_settings(reranker.encoder),
        "marker": marker,
        "max_seq_length": reranker.config.max_seq_length,
        "token_dim": reranker.config.token_dim,
        "trained_layers": reranker.config.trained_layers,
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    if reranker.config.trained_layers:  # fine-tuned top layers: their weights shape the vectors
        for name, p in sorted(reranker.trainable_backbone_parameters(reranker.config.trained_layers).items()):
            h.update(name.encode())
            h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


class TokenCache:
    """Packed frozen-backbone token vectors of a list of texts.

    Attributes:
        packed: ``(T, D) x float16`` tokens with ``(N + 1,)`` offsets (see :class:`PackedTokens`).
    """

    def __init__(self, packed: PackedTokens) -> None:
        self.packed = packed

    @classmethod
    def build(
        cls,
        reranker: MaxSimReranker,
        texts: Sequence[str],
        *,
        marker: str,
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = False,
    ) -> TokenCache:
        """Encode ``marker + text`` for every text (or load the matching cache file).

        Args:
            reranker: supplies the backbone (its projection is not applied).
            texts: ``N`` strings.
            marker: the query or document marker.
            cache_dir: folder for ``tokens-<fingerprint>.safetensors``; ``None`` disables the file.
            show_progress: progress bar over backbone batches.
        """
        path = None
        if cache_dir is not None and reranker.config.trained_layers == 0:  # shipped weights only
            path = Path(cache_dir) / f"tokens-{_fingerprint(reranker, marker, texts)}.safetensors"
            if path.is_file():
                try:  # a cache: a corrupt or truncated file is encoded again, not an error
                    t = read_tensors(path)  # NaN / inf refused there
                    cached = PackedTokens(tokens=t["tokens"], offsets=t["offsets"])
                    _check_packed(cached, len(texts), reranker.config.token_dim)
                except (ValueError, KeyError, OSError) as exc:
                    log.warning("%s is not a readable token cache (%s): encoding again", path, exc)
                else:
                    log.info("loaded %d cached token sequences from %s", len(texts), path)
                    return cls(cached)
        packed = reranker.backbone_tokens(list(texts), marker=marker, show_progress=show_progress)
        packed = PackedTokens(tokens=packed.tokens.to("cpu", torch.float16), offsets=packed.offsets.cpu())
        if path is not None:  # a unique temporary file (two runs shared "tokens-*.tmp"), umask modes
            atomic_write_bytes(path, save({"tokens": packed.tokens.contiguous(), "offsets": packed.offsets.contiguous()}))
        return cls(packed)

    def __len__(self) -> int:
        return int(self.packed.offsets.numel() - 1)

    def gather(self, rows: Sequence[int], device: torch.device) -> PackedTokens:
        """Packed ``float32`` tokens of ``rows`` (in that order) on ``device``.

        Returns:
            :class:`PackedTokens` ``(T', D)`` with ``(len(rows) + 1,)`` offsets.
        """
        # the index arithmetic runs on the CPU: the offsets of an online (train_last_layers > 0)
        # cache live on the accelerator, and the aranges below would be CPU tensors beside them
        off = self.packed.offsets.cpu()
        starts, ends = off[list(rows)], off[[r + 1 for r in rows]]
        lengths = ends - starts  # (n,)
        # token index of every gathered row: start of its text + position inside it
        owner = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        idx = starts[owner] + torch.arange(int(lengths.sum())) - first[owner]
        tokens = self.packed.tokens[idx.to(self.packed.tokens.device)].to(device, torch.float32)
        offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)]).to(device)
        return PackedTokens(tokens=tokens, offsets=offsets)

    def padded(self, rows: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``float32`` tokens of ``rows``.

        Returns:
            ``((B, L, D) x float32, (B, L) x bool)`` with zeros at padding.
        """
        packed = self.gather(rows, device)
        lengths = packed.lengths
        width = max(1, int(lengths.max())) if len(rows) else 1
        mask = torch.arange(width, device=device)[None, :] < lengths[:, None]  # (B, L)
        out = packed.tokens.new_zeros(len(rows), width, packed.tokens.shape[-1])
        out[mask] = packed.tokens  # row-major order of the mask = packed order
        return out, mask


@dataclass
class HotpotSplit:
    """Fixed split of the HotpotQA distractor file for reranker training and evaluation.

    Attributes:
        train, val, test: groups (``val`` = the last ``val_rows`` of the training rows; ``test`` =
            every row after ``train_rows``). Questions without a gold paragraph are left out.
        queries, texts: the string tables the groups index.
    """

    train: list[QueryGroup]
    val: list[QueryGroup]
    test: list[QueryGroup]
    queries: TextTable
    texts: TextTable


def hotpot_split(
    data: str | os.PathLike[str] | None = None,
    *,
    train_rows: int = 400,
    val_rows: int = 0,
    evidence: bool = False,
) -> HotpotSplit:
    """Load the distractor file and split it: rows ``[0, train_rows)`` train, the rest test.

    Args:
        data: the distractor JSONL, or the data folder (default ``$RAG_RELAX_DATA`` / ``../shared/data``).
        train_rows: rows used for training (400 of the shared 500-row file).
        val_rows: the last ``val_rows`` training rows are held out for model selection.
        evidence: add the ``hotpotqa/evidence_500.jsonl`` rows as extra training groups (it has
            no overlap with the distractor file); with ``data`` a file, ``evidence_500.jsonl``
            beside it is read, with a folder its ``hotpotqa/evidence_500.jsonl`` (or
            ``evidence_500.jsonl``).
    """
    from rag_relax_plugins.datasets.hotpotqa import (
        EVIDENCE_FILE,
        load_hotpotqa_distractor,
        load_hotpotqa_evidence,
    )

    if not 0 <= val_rows < train_rows:
        raise ValueError(f"val_rows must satisfy 0 <= val_rows < train_rows, got {val_rows} and {train_rows}")
    rows = load_hotpotqa_distractor(data)
    if len(rows) <= train_rows:
        raise ValueError(f"train_rows must be < the {len(rows)} rows of the distractor file, got {train_rows}")
    queries, texts = TextTable(), TextTable()
    fit = train_rows - val_rows
    train = hotpot_groups(rows[:fit], queries, texts)
    val = hotpot_groups(rows[fit:train_rows], queries, texts)
    test = hotpot_groups(rows[train_rows:], queries, texts)
    if evidence:
        folder = None
        if data is not None:
            p = Path(data)
            folder = p.parent if p.is_file() else p  # the evidence file beside the distractor file
            if folder.is_dir() and not any((folder / f).is_file() for f in (EVIDENCE_FILE, EVIDENCE_FILE.name)):
                raise FileNotFoundError(
                    f"evidence=True reads {EVIDENCE_FILE.name} from the folder of the data, and there is "
                    f"none in {folder.resolve()}: put it beside {p.name if p.is_file() else EVIDENCE_FILE.parent}"
                )
        train += evidence_groups(load_hotpotqa_evidence(folder), queries, texts)
    return HotpotSplit(train=train, val=val, test=test, queries=queries, texts=texts)


def backbone_hidden_size(backbone: str | None) -> int:
    """Hidden size from a local backbone folder's ``config.json`` (384 without one: MiniLM)."""
    file = Path(backbone) / "config.json" if backbone is not None else None
    if file is None or not file.is_file():
        return 384
    meta = read_json(file)
    for key in ("hidden_size", "d_model", "dim"):
        if isinstance(meta.get(key), int):
            return int(meta[key])
    return 384
