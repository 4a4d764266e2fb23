"""``to_dict`` / ``from_dict`` for the package's frozen dataclass configs (one implementation).

Every config (model, index, training) is saved as JSON next to its weights and read back with
unknown keys refused by name, so a typo or a file from a newer version never loads silently.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["DictConfig"]

_C = TypeVar("_C", bound="DictConfig")


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
