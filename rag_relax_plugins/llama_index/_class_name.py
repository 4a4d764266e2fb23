"""LlamaIndex components whose pydantic models forbid extra fields, and ``class_name``.

``BaseComponent.model_dump()`` adds ``class_name`` to every dump, so with ``extra="forbid"`` the
plain pydantic round trip ``Cls.model_validate(obj.model_dump())`` (and ``Cls(**obj.model_dump())``,
``model_validate_json``) was refused; LlamaIndex's own ``from_dict`` drops the key itself.
"""

from __future__ import annotations

from typing import Any

__all__ = ["without_own_class_name"]


def without_own_class_name(cls: Any, data: Any) -> Any:
    """``data`` without its ``class_name`` when that names ``cls`` (another class name is kept, for
    pydantic to refuse as an extra field)."""
    if isinstance(data, dict) and data.get("class_name") == cls.class_name():
        return {k: v for k, v in data.items() if k != "class_name"}
    return data
