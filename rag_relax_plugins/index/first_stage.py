"""First-stage vector search for the MoL index: exact torch matmul, or FAISS flat / HNSW / IVF.

A first stage searches a set of ``M`` vectors by inner product and returns, per query, the
positions of the best ``n`` vectors. The MoL index keeps two: one over the ``N * P_x`` item
component vectors (``TopKPerEmbd``) and one over the ``N`` mean item components (``TopKAvg``).
Which item row each vector belongs to, through upserts and deletes, is kept by
:mod:`rag_relax_plugins.index.stages`.

Filters are applied *before* scoring: the torch backend masks the score matrix chunk by chunk,
FAISS receives an ``IDSelectorBitmap`` in its search parameters (flat, HNSW and IVF all honour
it), so a restrictive filter still returns ``n`` allowed vectors when they exist (for HNSW/IVF up
to the usual approximation). FAISS is optional; ``kind="torch"`` needs nothing beyond torch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from rag_relax_plugins._errors import require
from rag_relax_plugins.core.config_dict import DictConfig, plain_scalars
from rag_relax_plugins.core.scalars import check_count, check_optional_count

logger = logging.getLogger(__name__)

__all__ = [
    "STAGES",
    "FaissSearcher",
    "FirstStageConfig",
    "TorchSearcher",
    "VectorSearcher",
    "build_searcher",
    "first_stage_config",
    "ivf_cells",
    "stage_vectors",
    "vectors_per_item",
]

Kind = Literal["torch", "flat", "hnsw", "ivf"]
_KINDS = ("torch", "flat", "hnsw", "ivf")
_CHUNK_ELEMENTS = 1 << 23
_C_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class FirstStageConfig(DictConfig):
    """Which first stage the approximate strategies use, and its knobs.

    Attributes:
        kind: ``"torch"`` (exact chunked matmul, no extra dependency), ``"flat"`` (FAISS
            ``IndexFlatIP``, exact), ``"hnsw"`` (``IndexHNSWFlat``) or ``"ivf"`` (``IndexIVFFlat``).
        hnsw_m: HNSW graph degree.
        hnsw_ef_construction: HNSW build beam width.
        hnsw_ef_search: HNSW search beam width (raised to ``n`` when a search asks for more).
        ivf_nlist: IVF cells; ``None`` picks ``4 * sqrt(M)``. Either is capped at ``M // 39``
            (at least 1: FAISS's k-means wants 39 training points per cell); an explicit value
            that is capped logs a warning. ``M`` is the number of vectors of the stage (``N``
            for ``TopKAvg``, ``N * P_x`` for ``TopKPerEmbd``).
        ivf_nprobe: IVF cells visited per query.
        seed: k-means seed for IVF training (deterministic builds).
    """

    _config_name = "FirstStageConfig keys"

    kind: Kind = "torch"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None
    ivf_nprobe: int = 16
    seed: int = 1234

    def __post_init__(self) -> None:
        plain_scalars(self)
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        # FAISS takes them as C ints: 2**40 was accepted (and saved) and failed in the first build
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe"):
            check_count(name, getattr(self, name), 1, _C_INT_MAX, hint="a FAISS int")
        if check_optional_count("ivf_nlist", self.ivf_nlist, 1) is not None:
            check_count("ivf_nlist", self.ivf_nlist, 1, _C_INT_MAX, hint="a FAISS int")
        check_count("seed", self.seed, 0, _C_INT_MAX, hint="FAISS k-means seed")


def first_stage_config(first_stage: FirstStageConfig | str) -> FirstStageConfig:
    """``first_stage`` itself, or the config of a kind string (``"torch"``, ``"flat"``, ...).

    Raises:
        TypeError: neither; ValueError: an unknown kind.
    """
    if isinstance(first_stage, str):
        return FirstStageConfig(kind=first_stage)  # type: ignore[arg-type]
    if not isinstance(first_stage, FirstStageConfig):
        raise TypeError(f"first_stage must be a FirstStageConfig or a kind string, got {type(first_stage).__name__}")
    return first_stage


class VectorSearcher:
    """Inner-product top-``n`` over ``M`` vectors; subclasses implement :meth:`search`."""

    exact: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def search(
        self, queries: torch.Tensor, n: int, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Best ``n`` vector positions per query.

        Args:
            queries: ``(Q, d) x float``.
            n: vectors per query.
            allowed: ``(M,) x bool`` mask of searchable vectors, or ``None`` for all. A FAISS
                searcher reuses the bitmap it packed for the last mask when given the same
                tensor object again (the live mask of an edited stage, one tensor until the
                next edit): never change a mask in place between searches.

        Returns:
            ``(Q, n') x long`` positions, best first, ``n' = min(n, M)``; ``-1`` where fewer
            than ``n'`` allowed vectors were found.
        """
        raise NotImplementedError

    def add(self, vectors: torch.Tensor) -> None:
        """Append ``(m, d)`` vectors (positions continue from ``len(self)``)."""
        raise NotImplementedError


class TorchSearcher(VectorSearcher):
    """Exact search by chunked matmul over a tensor it holds (no copy of a view it is given)."""

    exact = True

    def __init__(self, vectors: torch.Tensor) -> None:
        self.vectors = vectors

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def add(self, vectors: torch.Tensor) -> None:
        self.vectors = torch.cat([self.vectors, vectors.to(self.vectors.dtype)])

    def search(
        self, queries: torch.Tensor, n: int, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        m = len(self)
        n = min(n, m)
        q = queries.to(torch.float32)
        chunk = max(n, _CHUNK_ELEMENTS // max(1, q.shape[0]))
        best_s = torch.full((q.shape[0], 0), -math.inf, device=q.device)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
        for start in range(0, m, chunk):
            block = self.vectors[start : start + chunk].to(torch.float32)
            scores = q @ block.T  # (Q, chunk)
            if allowed is not None:
                scores = scores.masked_fill(~allowed[start : start + chunk].unsqueeze(0), -math.inf)
            s, i = scores.topk(min(n, scores.shape[1]), dim=1)
            best_s = torch.cat([best_s, s], dim=1)
            best_i = torch.cat([best_i, i + start], dim=1)
            if best_s.shape[1] > n:
                best_s, pos = best_s.topk(n, dim=1)
                best_i = best_i.gather(1, pos)
        return best_i.masked_fill(torch.isinf(best_s), -1)


def ivf_cells(config: FirstStageConfig, m: int) -> int:
    """The number of IVF cells a build over ``m`` vectors uses: ``config.ivf_nlist``, else
    ``4 sqrt(m)``, capped at one cell per 39 training points."""
    wanted = config.ivf_nlist or int(4 * math.sqrt(max(m, 1)))
    return max(1, min(wanted, m // 39 if m >= 39 else 1))


class FaissSearcher(VectorSearcher):
    """A FAISS index (flat, HNSW or IVF) over inner product; positions are FAISS sequential ids."""

    def __init__(self, config: FirstStageConfig, index: Any) -> None:
        self.config = config
        self.index = index
        self.exact = config.kind == "flat"
        self.built_on = int(index.ntotal)  # vectors at the build (or the read): IVF cells fit these
        self._bits: tuple[torch.Tensor, np.ndarray] | None = None  # the last mask and its bitmap

    @classmethod
    def build(cls, config: FirstStageConfig, vectors: torch.Tensor) -> FaissSearcher:
        """Build (and for IVF, train with a fixed seed) an index over ``(M, d)`` vectors."""
        faiss = require("faiss", "faiss")
        x = np.ascontiguousarray(vectors.detach().to("cpu", torch.float32).numpy())
        m, d = x.shape
        if config.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif config.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.hnsw_ef_construction
        elif config.kind == "ivf":
            nlist = ivf_cells(config, m)
            if config.ivf_nlist is not None and nlist < config.ivf_nlist:
                logger.warning("ivf_nlist=%d is capped at %d cells for %d vectors (39 training points per cell)",
                               config.ivf_nlist, nlist, m)
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = config.seed
            # FAISS prints (C++, past logging) a warning under 39 points per cell: fewer than 39 vectors
            # get one cell (ivf_cells), trained as well as they can be; the clustering is the same
            index.cp.min_points_per_centroid = min(39, max(1, m // nlist))
            if m == 0:
                raise ValueError("cannot train an IVF first stage on zero vectors")
            sample = x
            if m > 64 * nlist:  # k-means on a seeded sample of 64 points per cell
                rng = np.random.default_rng(config.seed)
                sample = x[np.sort(rng.choice(m, 64 * nlist, replace=False))]
            index.train(sample)
        else:  # pragma: no cover - FirstStageConfig validates kind
            raise ValueError(f"not a FAISS kind: {config.kind!r}")
        if m:
            index.add(x)
        return cls(config, index)  # built_on = m

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: torch.Tensor) -> None:
        self.index.add(np.ascontiguousarray(vectors.detach().to("cpu", torch.float32).numpy()))

    def _params(self, n: int, allowed: torch.Tensor | None) -> Any:
        faiss = require("faiss", "faiss")
        kwargs: dict[str, Any] = {}
        if allowed is not None:
            bits = self._bits  # one read: a concurrent search may replace the cache meanwhile
            if bits is None or bits[0] is not allowed:
                bits = (allowed, np.packbits(allowed.detach().to("cpu").numpy().astype(bool), bitorder="little"))
                self._bits = bits
            kwargs["sel"] = faiss.IDSelectorBitmap(bits[1])
        if self.config.kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(self.config.hnsw_ef_search, n), **kwargs)
        if self.config.kind == "ivf":
            return faiss.SearchParametersIVF(nprobe=self.config.ivf_nprobe, **kwargs)
        return faiss.SearchParameters(**kwargs) if kwargs else None

    def search(
        self, queries: torch.Tensor, n: int, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        n = min(n, len(self))
        q = np.ascontiguousarray(queries.detach().to("cpu", torch.float32).numpy())
        params = self._params(n, allowed)
        _, labels = (
            self.index.search(q, n, params=params)
            if params is not None
            else self.index.search(q, n)
        )
        return torch.from_numpy(labels).to(device=queries.device, dtype=torch.long)

    def write(self, path: str) -> None:
        """Write with ``faiss.write_index`` (FAISS's own format, no pickle)."""
        require("faiss", "faiss").write_index(self.index, path)

    @classmethod
    def read(cls, config: FirstStageConfig, path: str) -> FaissSearcher:
        """Read a file written by :meth:`write` for a first stage of ``config.kind``.

        Raises:
            ValueError: the file holds another FAISS index class or metric than ``config.kind``
                builds (``config.json`` edited, or files mixed between folders): an HNSW graph
                read as a ``"flat"`` stage would be searched as exact and give approximate results.
        """
        faiss = require("faiss", "faiss")
        index = faiss.read_index(path)
        want = {"flat": faiss.IndexFlatIP, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}.get(config.kind)
        if want is None or not isinstance(index, want) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(
                f"{path} holds a FAISS {type(index).__name__} (metric {index.metric_type}), but the first stage "
                f"kind is {config.kind!r}" + (f" ({want.__name__}, inner product)" if want is not None else
                                              ", which has no FAISS file")
            )
        return cls(config, index)


def build_searcher(config: FirstStageConfig, vectors: torch.Tensor) -> VectorSearcher:
    """A searcher of ``config.kind`` over ``(M, d)`` vectors."""
    if config.kind == "torch":
        return TorchSearcher(vectors)
    return FaissSearcher.build(config, vectors)


STAGES = ("per_embd", "avg")


def vectors_per_item(name: str, p_x: int) -> int:
    """How many vectors of the first stage ``name`` belong to one item: ``P_x`` for
    ``"per_embd"``, 1 for ``"avg"``."""
    if name not in STAGES:
        raise ValueError(f"first stage must be one of {STAGES}, got {name!r}")
    return p_x if name == "per_embd" else 1


def stage_vectors(name: str, components: torch.Tensor) -> torch.Tensor:
    """The vectors the first stage ``name`` searches, from cached item components ``(N, P_x, d_P)``.

    ``"per_embd"``: every component, ``(N * P_x, d_P)`` (vector ``v`` -> item row ``v // P_x``),
    in the cache dtype (a view); ``"avg"``: the mean component per item, ``(N, d_P) x float32``.
    """
    if name == "per_embd":
        return components.reshape(-1, components.shape[-1])  # (N * P_x, d_P)
    if name == "avg":
        return components.to(torch.float32).mean(dim=1)  # (N, d_P)
    raise ValueError(f"first stage must be one of {STAGES}, got {name!r}")
