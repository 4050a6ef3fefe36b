"""Python factories: ``package.module:Callable`` or ``path/to/file.py:Callable``, with optional arguments.

A factory is the user's own code that builds a model. It is named as text, optionally followed by keyword
arguments after ``?``: ``file.py:make?norm=none,width=2`` or ``pkg.mod:Net?num_classes=10``. Each value is
read as a YAML scalar (``2`` an int, ``0.5`` a float, ``true`` a bool, ``none`` a string unless written
``null``; quote a value to keep it a string). The callable (a function or a class) receives exactly those
keyword arguments and returns an ``nn.Module``.

Imports: while a file factory is imported *and called*, the file's own directory is first on ``sys.path``, so
it can import the modules beside it (``from layers import Block``); a ``package.module`` factory is imported
relative to the current directory, as ``python -m`` does. Both are removed from ``sys.path`` afterwards, and
a file factory's neighbours from ``sys.modules`` (another folder's ``layers.py`` is then imported afresh).

Every failure is one line naming the user's file or module: a missing callable lists the callables defined
there, a bad argument shows the callable's signature (:func:`inspect.signature`).

This RUNS YOUR OWN CODE: it is the one place where nrflab executes code named in its input, and only when
you name it. Kept apart from :mod:`nrflab.models.references`, which decides *when* a factory is called.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import yaml
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.models.inspection import first_line

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
FACTORY_PATTERN = re.compile(rf"(?P<left>[^?]+):(?P<attr>{_IDENT})(?:\?(?P<args>.*))?")

Scalar = str | int | float | bool | None
_OWN_PREFIX = "nrflab_user_factory_"  # the name a factory file is registered under in sys.modules


@dataclass(frozen=True)
class FactorySpec:
    """A parsed factory reference: where the callable lives, its name and the keyword arguments it gets.

    ``path`` is set for a file factory, ``module`` for a ``package.module`` factory.
    """

    text: str
    attribute: str
    path: Path | None = None
    module: str | None = None
    arguments: tuple[tuple[str, Scalar], ...] = ()

    @property
    def where(self) -> str:
        """The user's file or module, as error lines name it."""
        return str(self.path) if self.path is not None else f"module {self.module}"

    def call_text(self) -> str:
        """``make(norm='none', width=2)``: the call nrflab makes."""
        return f"{self.attribute}({', '.join(f'{k}={v!r}' for k, v in self.arguments)})"


def looks_like_factory(text: str) -> bool:
    """Whether ``text`` has the factory form (``left:Callable``, optionally ``?arguments``)."""
    match = FACTORY_PATTERN.fullmatch(str(text).strip())
    if match is None:
        return False
    left = match.group("left")
    return left.endswith(".py") or re.fullmatch(rf"{_IDENT}(\.{_IDENT})*", left) is not None


def parse_factory(text: str) -> FactorySpec:
    """Parse ``file.py:fn?k=v,...`` or ``package.module:Callable?k=v,...`` (one-line errors)."""
    raw = str(text).strip()
    match = FACTORY_PATTERN.fullmatch(raw)
    if match is None or not looks_like_factory(raw):
        raise NrflabError(
            f"{raw!r} is not a factory; write package.module:Callable or path/to/file.py:Callable "
            f"(optionally ?key=value,...)"
        )
    left, attr = match.group("left"), match.group("attr")
    arguments = _parse_arguments(match.group("args"), raw)
    if left.endswith(".py"):
        path = Path(left).expanduser()
        if not path.is_file():
            raise NrflabError(f"factory file not found: {left}")
        return FactorySpec(raw, attr, path=path, arguments=arguments)
    return FactorySpec(raw, attr, module=left, arguments=arguments)


def _parse_arguments(text: str | None, raw: str, *, where: str = "") -> tuple[tuple[str, Scalar], ...]:
    """``norm=none,width=2`` as keyword arguments, each value a YAML scalar. ``where`` names the text in
    errors (default: ``factory RAW``; ``--factory-arg`` gives its own)."""
    if text is None:
        return ()
    where = where or f"factory {raw}"
    pairs: list[tuple[str, Scalar]] = []
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(_IDENT, key):
            raise NrflabError(f"{where}: arguments are key=value pairs separated by commas, got {part!r}")
        if key in dict(pairs):
            raise NrflabError(f"{where}: argument {key!r} given twice")
        pairs.append((key, _scalar(value.strip(), key, where)))
    return tuple(pairs)


def _scalar(value: str, key: str, where: str) -> Scalar:
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    if parsed is not None and not isinstance(parsed, (str, int, float, bool)):
        raise NrflabError(f"{where}: argument {key}={value} is not a number, bool or string")
    return parsed


def with_arguments(text: str, pairs: Sequence[str]) -> str:
    """The factory reference ``text`` with ``--factory-arg KEY=VALUE`` pairs added to its ``?key=value``
    arguments: the flag form of the same syntax, read by the same parser (a flag may hold several pairs,
    comma-separated, as after ``?``). A key given both in ``text`` and by a flag, or by two flags, is
    refused: neither silently wins."""
    raw = str(text).strip()
    match = FACTORY_PATTERN.fullmatch(raw)
    if match is None or not looks_like_factory(raw):
        raise NrflabError(f"--factory-arg needs a factory (package.module:Callable or file.py:Callable), not {raw!r}")
    inline = dict(_parse_arguments(match.group("args"), raw))
    flagged: list[str] = []
    for pair in pairs:
        for key, _ in _parse_arguments(str(pair), raw, where=f"--factory-arg {str(pair).strip()!r}"):
            if key in inline:
                raise NrflabError(f"factory argument {key!r} is given in {raw} and by --factory-arg; give it once")
            if key in flagged:
                raise NrflabError(f"--factory-arg: argument {key!r} given twice")
            flagged.append(key)
    if not pairs:
        return raw
    return raw + ("," if match.group("args") is not None else "?") + ",".join(str(p).strip() for p in pairs)


@contextlib.contextmanager
def _on_sys_path(folder: str, *, forget_neighbours: bool) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration (removed after unless it was there already).

    With ``forget_neighbours``, modules first imported from ``folder`` meanwhile are dropped from
    ``sys.modules`` afterwards, so a factory file in another folder with a same-named neighbour
    (``layers.py``) imports its own, not this one's.
    """
    added = folder not in sys.path
    before = set(sys.modules)
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
        if forget_neighbours:
            for name in set(sys.modules) - before:
                origin = getattr(sys.modules[name], "__file__", None) or ""
                if not name.startswith(_OWN_PREFIX) and os.path.dirname(os.path.realpath(origin)) == folder:
                    sys.modules.pop(name, None)


def _search_folder(spec: FactorySpec) -> str:
    return str(spec.path.resolve().parent) if spec.path is not None else os.getcwd()


def _import(spec: FactorySpec) -> ModuleType:
    """Import the user's file or module (on ``sys.path`` already: see :func:`call_factory`)."""
    if spec.path is None:
        try:
            return importlib.import_module(spec.module or "")
        except Exception as exc:
            raise NrflabError(
                f"factory module {spec.module} cannot be imported ({type(exc).__name__}: {first_line(exc)})"
            ) from None
    digest = hashlib.sha256(str(spec.path.resolve()).encode()).hexdigest()[:12]
    name = f"{_OWN_PREFIX}{digest}"
    loader_spec = importlib.util.spec_from_file_location(name, spec.path)
    if loader_spec is None or loader_spec.loader is None:
        raise NrflabError(f"factory file {spec.path} cannot be imported")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling inside the user's file need it registered
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise NrflabError(
            f"factory file {spec.path} failed to import ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    return module


def defined_callables(module: ModuleType) -> list[str]:
    """Public functions and classes defined in ``module`` itself (not imported into it), in file order."""
    names = []
    for key, value in vars(module).items():
        if key.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if getattr(value, "__module__", None) == module.__name__:
            names.append(key)
    return names


def _find(spec: FactorySpec, module: ModuleType) -> Callable[..., object]:
    fn = getattr(module, spec.attribute, None)
    if callable(fn):
        return fn  # type: ignore[no-any-return]
    found = defined_callables(module)
    there = ", ".join(found) if found else "none"
    where = spec.where if spec.path is not None else f"{spec.where} ({getattr(module, '__file__', '?')})"
    raise NrflabError(f"no function {spec.attribute!r} in {where}; functions there: {there}")


def _signature(fn: Callable[..., object], name: str) -> str:
    try:
        return f"{name}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return f"{name}(...)"


def call_factory(spec: FactorySpec) -> nn.Module:
    """Import the user's file or module and call the factory with its arguments (runs the user's code).

    The file's directory (or, for a module, the current directory) is on ``sys.path`` during the import
    and the call. Returns the ``nn.Module``; everything else is one line naming the user's file.
    """
    with _on_sys_path(_search_folder(spec), forget_neighbours=spec.path is not None):
        fn = _find(spec, _import(spec))
        kwargs = dict(spec.arguments)
        signature = _signature(fn, spec.attribute)
        try:
            inspect.signature(fn).bind(**kwargs)
        except TypeError as exc:
            raise NrflabError(
                f"factory {spec.text}: {spec.call_text()} does not fit {signature} ({first_line(exc)})"
            ) from None
        except ValueError:  # no signature available (a builtin): let the call decide
            pass
        try:
            module = fn(**kwargs)
        except TypeError as exc:
            raise NrflabError(
                f"factory {spec.text} raised TypeError: {first_line(exc)} (called {spec.call_text()}; "
                f"signature {signature})"
            ) from None
        except Exception as exc:
            raise NrflabError(f"factory {spec.text} raised {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise NrflabError(f"factory {spec.text} returned a {type(module).__name__}, not a torch.nn.Module")
    return module


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
