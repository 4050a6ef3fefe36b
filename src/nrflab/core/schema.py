"""What a user types: the settings base class, and the one translator of a validation error into one line.

Every settings object a user fills in (command-line flags, a config file, ``--set key=value``) is a
pydantic model; :class:`Schema` is their base (frozen, unknown keys refused). Whatever the model, a bad
value becomes one line through :func:`one_line`, so ``nrflab train``, ``nrflab transfer`` and
``nrflab experiment`` word their refusals the same way: where the value came from, which key, what is
wrong, and what was given.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from nrflab.core.errors import NrflabError

S = TypeVar("S", bound="Schema")

#: Longest shown input in an error line.
_SHOWN = 60


class Schema(BaseModel):
    """Base of every settings object a user types: frozen, unknown keys refused, no NaN or infinity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @classmethod
    def parse(cls: type[S], data: Mapping[str, Any], *, where: str = "settings", flags: Collection[str] = ()) -> S:
        """Validate ``data`` (keys spelled with ``-`` or ``_``); the first problem raises one line (see
        :func:`one_line`)."""
        fields = {str(k).replace("-", "_"): v for k, v in data.items()}
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise NrflabError(one_line(exc, model=cls, where=where, flags=flags)) from None


def one_line(
    exc: ValidationError,
    *,
    model: type[BaseModel],
    where: str = "",
    flags: Collection[str] = (),
    noun: str = "setting",
) -> str:
    """The first problem of ``exc`` as one line.

    ``where`` says what was being read (``invalid config``, ``recipe FILE``); without it the key is named
    by ``noun`` (``setting twins.epochs: ...``). A top-level key in ``flags`` (those given on the command
    line) is named as its option (``option --eps: ...``). An unknown key lists the known ones at its level
    of ``model``; a scalar input that the message does not already show is appended as ``(got ...)``.
    """
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err.get("loc", ()))
    kind = str(err.get("type", ""))
    if kind == "extra_forbidden":
        shown = repr(loc[0]) if len(loc) == 1 else ".".join(loc)
        known = known_keys(model, loc[:-1])
        hint = f" (known: {', '.join(known)})" if known else ""
        return _join(where, f"unknown {noun} {shown}{hint}")
    msg = "required" if kind == "missing" else str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    msg += _got(err.get("input"), msg) if kind != "missing" else ""
    if not loc:
        return _join(where or f"{noun}s", msg)
    if loc[0] in flags:
        return f"option --{loc[0].replace('_', '-')}: {msg}"
    key = ".".join(loc)
    return _join(where, f"{key}: {msg}") if where else f"{noun} {key}: {msg}"


def _join(where: str, text: str) -> str:
    return f"{where}: {text}" if where else text


def _got(value: object, msg: str) -> str:
    """`` (got VALUE)`` for a scalar input the message does not show already, else nothing."""
    if value is None or isinstance(value, (dict, list, tuple, set)) or str(value) in msg:
        return ""
    text = repr(value)
    return f" (got {text[:_SHOWN]}{'...' if len(text) > _SHOWN else ''})"


def known_keys(model: type[BaseModel], path: Sequence[str]) -> list[str]:
    """The field names of the group of settings reached by ``path`` in ``model`` (mapping keys skipped),
    or [] when the path leads to no model."""
    annotation: Any = model
    for key in path:
        annotation = _strip_optional(annotation)
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            continue
        found = _model_of(annotation)
        info = found.model_fields.get(key) if found is not None else None
        if info is None:
            return []
        annotation = info.annotation
    annotation = _strip_optional(annotation)
    found = None if get_origin(annotation) is dict else _model_of(annotation)
    return list(found.model_fields) if found is not None else []


def _strip_optional(annotation: Any) -> Any:
    """``X`` for ``Optional[X]``; anything else as it is."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    optional = get_origin(annotation) is not dict and len(args) == 1 and type(None) in get_args(annotation)
    return args[0] if optional else annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


__all__ = ["Schema", "one_line"]
