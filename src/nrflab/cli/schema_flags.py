"""Command-line options generated from a settings schema, so that the flags ARE the fields.

:func:`schema_command` registers a command whose options are its own (where to write, resume, quiet)
plus one option per field of a schema (a pydantic model, or a frozen dataclass): ``name`` becomes
``--name`` with dashes, ``bool`` a ``--name/--no-name`` switch, ``list[X]`` a repeatable option,
``Literal`` values and registry-backed names (architectures, normalizations) are listed in the help.
Every generated option defaults to "not given", so the schema's own defaults (and a dataset preset or a
recipe file) decide what an omitted flag means; the values the user gave reach the command body as one
mapping, field name -> value, and the schema validates them (one home for every check and message).
A :class:`Flag` adjusts one field where the command line spells it differently (short names, a text
form such as ``--milestones 50,100``). A field the command line cannot type natively is read as text
and handed to the schema as text. A number field is read by the number syntax of attack specs
(:func:`nrflab.attacks.parse_number`), so ``--eps 8/255`` works wherever ``eps=8/255`` does.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import typer
from pydantic import BaseModel

from nrflab.attacks import parse_number

#: What the command body receives: the fields the user gave on the command line, by field name (the file
#: boundary of the command line: values as typed, checked by the schema they are handed to).
Given = Mapping[str, Any]
Body = Callable[..., None]
#: A pydantic model, a dataclass, or a function that builds validated settings from keyword arguments.
Schemalike = Union[type, Callable[..., object]]

_NATIVE = (int, float, str, Path)
_LISTS = (list, tuple, Sequence)


@dataclass(frozen=True)
class Flag:
    """How one field is typed on the command line, where the plain rendering is not what users type.

    ``names`` replaces the option's spellings (``("--eval-attack",)``; a switch ``("--targeted/--untargeted",)``);
    ``help`` serves fields without a description; ``parse`` turns the typed text (or, for a repeatable
    option, the list of texts) into the field's value (None: not given), and its errors are one line;
    ``repeat`` makes a text option repeatable; ``metavar`` names the typed value in the help.
    """

    names: tuple[str, ...] = ()
    help: str = ""
    parse: Optional[Callable[[Any], object]] = None
    repeat: bool = False
    metavar: str = ""


@dataclass(frozen=True)
class SchemaField:
    """One field of a schema: its name, type, description and default (None when required)."""

    name: str
    annotation: Any
    description: str
    default: object


def schema_fields(schema: Schemalike) -> list[SchemaField]:
    """The fields of a pydantic model or a dataclass, in declaration order; or the parameters of a function
    that builds validated settings from keywords (``features.make_settings``), in signature order."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return [
            SchemaField(name, info.annotation, info.description or "", info.get_default(call_default_factory=True))
            for name, info in schema.model_fields.items()
        ]
    if dataclasses.is_dataclass(schema):
        hints = typing.get_type_hints(schema)
        return [
            SchemaField(f.name, hints[f.name], str(f.metadata.get("help", "")), _dataclass_default(f))
            for f in dataclasses.fields(schema)
        ]
    if callable(schema):  # a settings constructor: its keyword parameters are the fields
        hints = typing.get_type_hints(schema)
        params = inspect.signature(schema).parameters.values()
        return [
            SchemaField(p.name, hints[p.name], "", None if p.default is inspect.Parameter.empty else p.default)
            for p in params
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
    raise TypeError(f"{schema!r} is neither a pydantic model, a dataclass nor a settings constructor")


def _dataclass_default(f: dataclasses.Field[Any]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    return None if f.default_factory is dataclasses.MISSING else f.default_factory()


def _registry_choices() -> dict[str, Callable[[], Sequence[str]]]:
    """Fields named after a registry: their values are that registry's names."""
    from nrflab.models import list_archs, list_norms

    return {"arch": list_archs, "norm": list_norms}


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _help(
    field: SchemaField, flag: Flag, schema: Schemalike, registries: Mapping[str, Callable[[], Sequence[str]]]
) -> str:
    """The field's description (or the flag's help), with its choices when they are a closed list."""
    text = field.description or flag.help or f"{getattr(schema, '__name__', 'settings')}.{field.name}."
    kind = _strip_optional(field.annotation)
    choices: Sequence[str] = ()
    if typing.get_origin(kind) is Literal:
        choices = [str(a) for a in typing.get_args(kind)]
    elif field.name in registries:
        choices = registries[field.name]()
    if choices and not all(c in text for c in choices):
        text = f"{text.rstrip('.')} (one of {', '.join(choices)})."
    return text


def _number_flag(field: SchemaField, flag: Flag) -> Flag:
    """A number field is read as text by the one number parser of attack specs, so ``--eps 8/255`` works
    wherever ``eps=8/255`` does; a field with its own text form keeps it."""
    if flag.parse is not None or _strip_optional(field.annotation) is not float:
        return flag
    long = flag.names[0].split("/")[0] if flag.names else "--" + field.name.replace("_", "-")
    return dataclasses.replace(flag, parse=lambda text: parse_number(text, what=f"for {long}"), metavar="NUMBER")


def _option(field: SchemaField, flag: Flag, schema: Schemalike, registries: Mapping[str, Any]) -> inspect.Parameter:
    """The generated option of one field, as a keyword parameter Typer reads."""
    kind = _strip_optional(field.annotation)
    origin = typing.get_origin(kind)
    if flag.parse is not None:
        annotation: Any = Optional[list[str]] if flag.repeat else Optional[str]
    elif kind is bool:
        annotation = Optional[bool]
    elif origin in _LISTS and typing.get_args(kind) and typing.get_args(kind)[0] in _NATIVE:
        annotation = Optional[list[typing.get_args(kind)[0]]]  # type: ignore[misc]
    elif kind in _NATIVE:
        annotation = Optional[kind]
    else:  # Literal, unions, nested types: text, validated by the schema
        annotation = Optional[str]
    long = "--" + field.name.replace("_", "-")
    names = flag.names or ((f"{long}/--no-{long[2:]}",) if kind is bool else (long,))
    option = typer.Option(
        None, *names, help=_help(field, flag, schema, registries), show_default=False, metavar=flag.metavar or None
    )
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def schema_command(
    app: typer.Typer,
    name: str,
    schema: Schemalike | tuple[Schemalike, ...],
    *,
    flags: Mapping[str, Flag] | None = None,
    skip: Collection[str] = (),
) -> Callable[[Body], Body]:
    """Register the decorated function as command ``name`` with one option per field of ``schema``.

    The function's first parameter receives the given fields (:data:`Given`); with a tuple of schemas
    (``(Overrides, Execution)``) its first parameters receive one :data:`Given` each, in order. Its other
    parameters are the command's own options, declared as usual. ``skip`` names fields the command declares
    itself (or never takes); ``flags`` adjusts fields (:class:`Flag`). An entry for a field the schemas no
    longer have is ignored, so a field removed from a schema never breaks the command line (a test finds
    such entries).
    """
    schemas = schema if isinstance(schema, tuple) else (schema,)
    groups = [[f for f in schema_fields(s) if f.name not in skip] for s in schemas]
    fields = [f for group in groups for f in group]
    if len({f.name for f in fields}) < len(fields):
        raise ValueError(f"{name}: the schemas share a field name")
    adjusted = dict(flags or {})
    flags = {**adjusted, **{f.name: _number_flag(f, adjusted.get(f.name, Flag())) for f in fields}}
    registries = _registry_choices()
    generated = [
        _option(f, flags.get(f.name, Flag()), s, registries) for s, group in zip(schemas, groups) for f in group
    ]

    def register(body: Body) -> Body:
        own = list(inspect.signature(body, eval_str=True).parameters.values())[len(schemas) :]
        clash = {p.name for p in own} & {p.name for p in generated}
        if clash:
            raise ValueError(f"{name}: options {', '.join(sorted(clash))} are also fields of its settings")

        def command(**values: Any) -> None:
            given: list[dict[str, object]] = [{} for _ in groups]
            for index, group in enumerate(groups):
                for f in group:
                    raw, parse = values.pop(f.name), flags.get(f.name, Flag()).parse
                    value = None if raw is None or raw == [] else parse(raw) if parse is not None else raw
                    if value is not None:  # a parse may say "not given" too (an empty list of models)
                        given[index][f.name] = value
            body(*given, **values)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + generated
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__doc__, command.__name__ = body.__doc__, body.__name__
        app.command(name)(command)
        return body

    return register


def split_list(values: Optional[Sequence[str] | str]) -> list[str] | None:
    """Repeated options, each possibly a comma- or space-separated list; None when empty."""
    items = [values] if isinstance(values, str) else list(values or [])
    out = [p for v in items for p in v.replace(",", " ").split() if p]
    return out or None


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
