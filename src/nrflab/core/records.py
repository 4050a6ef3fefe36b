"""What the library computes: frozen records, and the one function that turns them into JSON.

A computed result (an evaluation row, a transfer pair, a BN fold) is a :func:`record`: a frozen dataclass,
so it cannot change after it is made and compares by value. Nothing writes its JSON by hand: :func:`to_json`
turns any record (and the lists, mappings, tuples, paths and tensors inside it) into plain JSON data, field
by field, in declaration order. A field may name its JSON key (``field(metadata=json_key("self"))``), and a
nested record may be merged into its parent's keys (``field(metadata=FLAT)``), so files keep the shape
readers depend on.

A record whose file shape is *not* its fields (derived keys, renamed nests) keeps a ``to_dict`` of its own;
:func:`to_json` uses it wherever such a record is nested.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, overload

import torch
from typing_extensions import dataclass_transform

T = TypeVar("T")

FLAT: Mapping[str, Any] = {"flat": True}
"""Field metadata: merge this nested record's keys into the parent's (in place of one key)."""


def json_key(name: str) -> Mapping[str, Any]:
    """Field metadata: write this field under ``name`` instead of its attribute name."""
    return {"json": name}


@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, eq: bool = True) -> Callable[[type[T]], type[T]]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: type[T] | None = None, /, *, eq: bool = True) -> type[T] | Callable[[type[T]], type[T]]:
    """Make ``cls`` a computed record: a frozen dataclass (``eq=False`` for records that hold tensors or
    modules and compare by identity). Turn it into JSON with :func:`to_json`."""

    def wrap(c: type[T]) -> type[T]:
        return dataclasses.dataclass(frozen=True, eq=eq)(c)

    return wrap if cls is None else wrap(cls)


def to_json(obj: Any) -> Any:
    """Plain JSON data for ``obj``: a record (or any dataclass) becomes a dict of its fields in declaration
    order (a custom ``to_dict`` wins), mappings become dicts, tuples/lists/sets become lists, paths become
    strings, tensors and numpy scalars become numbers or lists. NaN stays NaN (the writer decides)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        custom = getattr(obj, "to_dict", None)
        return custom() if callable(custom) else fields_json(obj)
    if isinstance(obj, Mapping):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return obj.item()
    return obj


class Forward(Generic[T]):
    """A read-only attribute that one field answers: ``name = Forward[str]("model")`` in a class body makes
    ``obj.name`` read ``obj.model.name``. One line for each attribute a record passes on from a part of it,
    instead of a property each. (Not a dataclass field: it carries no annotation.)"""

    def __init__(self, via: str) -> None:
        self.via = via
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Forward[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | Forward[T]:
        if obj is None:
            return self
        return cast(T, getattr(getattr(obj, self.via), self.name))

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError(f"{self.name} is read from {self.via}; it cannot be set")


def fields_json(obj: Any) -> dict[str, object]:
    """A dataclass's fields as JSON data (what :func:`to_json` gives for a record without a ``to_dict``; for
    a class that keeps a ``to_dict`` for its callers, that method is ``return fields_json(self)``)."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(obj):
        value = to_json(getattr(obj, f.name))
        if f.metadata.get("flat"):
            out.update(value)
        else:
            out[f.metadata.get("json", f.name)] = value
    return out


__all__ = ["FLAT", "Forward", "fields_json", "json_key", "record", "to_json"]
