"""``to_dict`` / ``from_dict`` for the package's frozen dataclass configs (one implementation).

Every config (model, index, training) is saved as JSON next to its weights and read back with
unknown keys refused by name, so a typo or a file from a newer version never loads silently.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import sys
from typing import Any, TypeVar

__all__ = ["DictConfig", "plain_scalars", "require_saved_keys"]

_C = TypeVar("_C", bound="DictConfig")
_FLOATS = ("float", "float | None", float)  # annotations of number fields (strings: postponed annotations)
_STRS = ("str", "str | None", str)  # annotations of text fields: a PathLike given becomes its str


def plain_scalars(config: object) -> None:
    """Turn every numpy (any non-builtin) integer or real field of a dataclass into ``int`` /
    ``float``, in place: call it first in ``__post_init__``.

    A sweep that takes ``epochs`` from ``numpy.arange`` then passes the field checks, which test
    for ``int`` / ``float``, and the config stays JSON-ready. A ``numpy.bool_`` becomes a ``bool``
    (a flag from a numpy mask); a ``bool`` is never turned into a number, for the checks to refuse
    it where a number is due. A ``PathLike`` in a ``str`` (or ``str | None``) field, a folder
    given as a ``Path``, becomes its ``str`` (``to_dict`` went to JSON, which has no ``Path``).

    Two checks every config shares are made here, by the fields' annotations: a ``bool`` field
    must hold ``True`` or ``False`` (``"no"`` is truthy: it switched a flag on), and a ``float``
    field must not hold a ``bool`` (``lr=True`` trained at 1.0).

    Raises:
        TypeError: a ``bool`` field holding anything else, or a ``float`` (or ``float | None``)
            field holding a ``bool``.
    """
    np = sys.modules.get("numpy")  # a numpy scalar implies numpy was imported: never import it here
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        if isinstance(value, os.PathLike) and field.type in _STRS:  # a Path for a folder: kept JSON-ready
            value = os.fspath(value)
            object.__setattr__(config, field.name, value)
        elif type(value) not in (bool, int, float):
            if np is not None and isinstance(value, np.bool_):
                value = bool(value)
            elif isinstance(value, numbers.Integral):
                value = int(value)
            elif isinstance(value, numbers.Real):
                value = float(value)
            object.__setattr__(config, field.name, value)
        if field.type in ("bool", bool) and not isinstance(value, bool):
            raise TypeError(f"{field.name} must be True or False, got {value!r}")
        if field.type in _FLOATS and isinstance(value, bool):
            raise TypeError(f"{field.name} must be a number, not a bool, got {value!r}")


class DictConfig:
    """Mixin for ``@dataclass(frozen=True)`` configs.

    Subclasses set ``_config_name`` (used in error messages) and may override :meth:`to_dict` /
    :meth:`from_dict` to add a format version; the key check stays here.
    """

    _config_name = "config"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        """Inverse of :meth:`to_dict`.

        Raises:
            TypeError: ``data`` is not a dict.
            ValueError: unknown keys (named in the message).
        """
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown {cls._config_name}: {unknown}")
        return cls(**data)


def require_saved_keys(data: Any, keys: tuple[str, ...], where: object) -> None:
    """Refuse a saved config (``where``: its file) that lacks one of ``keys``, options every save
    of that format has written and whose default would silently change the results (a Gaussian
    embedder's ``geometry``, a MoL head's ``tau``): a damaged file, not an older save.

    Raises:
        ValueError: ``"<where>: no 'tau' ..."``.
    """
    missing = [k for k in keys if not (isinstance(data, dict) and k in data)]
    if missing:
        raise ValueError(f"{where}: no {missing[0]!r} (every save writes it; its default would change the "
                         "results: a damaged file?)")
