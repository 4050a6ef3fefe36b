"""A named registry of extension points: attacks, datasets, architectures, experiments, ...

Every extension point of nrflab is a :class:`Registry`: a decorator (or :meth:`Registry.add`) adds an entry
under a name, :meth:`Registry.get` looks one up (an unknown name is one line that lists the known ones), and
:meth:`Registry.names` lists them, optionally filtered by a shell pattern such as ``"pgd-*"`` (as timm's
``list_models`` does). Names keep the order in which they were registered, so messages and listings are
stable.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from nrflab.core.errors import NrflabError

T = TypeVar("T")
V = TypeVar("V")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Entries of type ``T`` by name.

    ``what`` names the kind of entry in messages ("attack", "dataset"): ``get("cw")`` on an attack registry
    raises ``unknown attack 'cw'; choose one of pgd-linf, pgd-l2, ...``.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; registering the same entry again is a no-op, another one an error
        (two extensions must not silently replace each other)."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise NrflabError(f"a {self.what} name must be a non-empty string without surrounding spaces")
        old = self._entries.get(name)
        if old is not None and old != entry:
            raise NrflabError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str, make: Callable[[V], T]) -> Callable[[V], V]:
        """A decorator that registers ``make(decorated)`` under ``name`` and returns the decorated object
        unchanged (so decorators stack: one class may be registered under several names)."""

        def decorate(obj: V) -> V:
            self.add(name, make(obj))
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The entry registered under ``name``; an unknown name raises one line listing the known ones."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise NrflabError(f"unknown {self.what} {name!r}; choose one of {', '.join(self._entries)}") from None

    def names(self, filter: str | None = None) -> list[str]:
        """Registered names in registration order; ``filter`` is a shell pattern (``"pgd-*"``)."""
        if filter is None:
            return list(self._entries)
        return [n for n in self._entries if fnmatch.fnmatchcase(n, filter)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"
