"""Command-line options generated from typed dataclasses and function signatures.

A builder's options are written once, as a dataclass (its ``Attributes:`` docstring section
gives each field's help) or as a function's keyword arguments (its ``Args:`` section); this
module turns them into argparse options and reads them back, so no flag is copied by hand::

    parser = argparse.ArgumentParser()
    cliargs.add_arguments(parser, BuildOptions, skip=("imagery",))
    options = cliargs.from_arguments(BuildOptions, parser.parse_args(argv))

How an annotation becomes an option (``--field-name`` unless :class:`Flag` names another):

- ``bool``: ``--flag`` and ``--no-flag``.
- ``int``, ``float``, ``str``, ``Path`` (and ``X | None``): one value of that type.
- ``Literal[...]`` and ``Enum`` subclasses: one of their values.
- ``tuple[X, ...]`` and ``list[X]``: one or more values, each also split on commas
  (``--parts a b`` and ``--parts a,b`` are the same).
- a parameter without a default: a required option.
- anything else (a mapping, a nested dataclass): a :class:`TypeError`, unless skipped.

Each option's help is its documentation, followed by its default; an undocumented field is a
:class:`TypeError`, so ``--help`` always says what an option does.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCALARS = (int, float, str, Path)
_SECTIONS = ("Args:", "Arguments:", "Attributes:")
# Google docstring sections, roles and literals, shown as plain text in --help.
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


@dataclass(frozen=True)
class Flag:
    """How one field or parameter appears on the command line, where it is not the default.

    Put it in a dataclass field's metadata (``field(metadata={"flag": Flag("--geometry")})``)
    or in a parameter's annotation (``Annotated[tuple[str, ...], Flag("--geometry")]``).

    Attributes:
        name: The option's name, e.g. ``--geometry`` for the field ``geometry_kinds``.
        choices: Allowed values (of each item, for a tuple), when they are not in the type.
        type: Reads one value from text, for a type the annotation cannot give (a union).
        help: Help text, instead of the docstring's.
    """

    name: str | None = None
    choices: Sequence[Any] | None = None
    type: Callable[[str], Any] | None = None
    help: str | None = None


@dataclass(frozen=True)
class Parameter:
    """A field or parameter, as the command line sees it.

    Attributes:
        name: The field's name, also the parsed argument's destination.
        annotation: Its resolved type, ``Annotated`` and ``None`` removed.
        default: Its default, or ``inspect.Parameter.empty`` for a required one.
        help: Its documentation, on one line.
        flag: Its :class:`Flag` (empty when the defaults apply).
        optional: Whether None is an allowed value.
    """

    name: str
    annotation: Any
    default: Any
    help: str
    flag: Flag
    optional: bool

    @property
    def option(self) -> str:
        """The option's name on the command line."""
        return self.flag.name or "--" + self.name.replace("_", "-")


def parameters(source: type | Callable[..., Any], skip: Iterable[str] = ()) -> list[Parameter]:
    """The command-line view of a dataclass's fields or a function's parameters.

    Args:
        source: A dataclass, or a function with type hints and a Google docstring.
        skip: Names to leave out (``*args`` and ``**kwargs`` always are).

    Raises:
        TypeError: for a field or parameter without documentation.
    """
    skipped = set(skip)
    hints = typing.get_type_hints(source, include_extras=True)
    docs = docstring_items(inspect.getdoc(source) or "")
    found = []
    for name, default, metadata in _declared(source):
        if name in skipped:
            continue
        annotation, flag = _unwrap(hints[name], metadata)
        optional = _is_optional(annotation)
        if optional:
            annotation = _without_none(annotation)
        text = flag.help or docs.get(name)
        if not text:
            raise TypeError(f"{_name(source)}: {name} has no documentation to show in --help")
        found.append(Parameter(name, annotation, default, text, flag, optional))
    return found


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    source: type | Callable[..., Any],
    *,
    skip: Iterable[str] = (),
    defaults: object | Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
    prefix: str = "",
) -> list[Parameter]:
    """Adds one option per field of a dataclass, or per parameter of a function.

    Args:
        parser: The parser or argument group to add to.
        source: A dataclass, or a function with type hints and a Google docstring.
        skip: Names the caller handles itself.
        defaults: An instance (or a mapping) whose values replace the declared defaults.
        flags: Name -> option name, where this parser needs another name than the declared
            one (e.g. when two sources have a field of the same name).
        prefix: Put before each destination (e.g. ``"build."``), for two sources that share
            field names in one parser; :func:`from_arguments` reads the same prefix.

    Returns:
        The options added.

    Raises:
        TypeError: for a field of a type with no command-line form, or without documentation.
    """
    if defaults is not None and not isinstance(defaults, Mapping):
        defaults = {field.name: getattr(defaults, field.name) for field in _fields(defaults)}
    added = []
    for parameter in parameters(source, skip):
        default = (defaults or {}).get(parameter.name, parameter.default)
        parameter = dataclasses.replace(parameter, default=default)
        if flags and parameter.name in flags:
            parameter = dataclasses.replace(
                parameter, flag=dataclasses.replace(parameter.flag, name=flags[parameter.name])
            )
        parser.add_argument(
            parameter.option, dest=prefix + parameter.name, **_argparse_keywords(parameter)
        )
        added.append(parameter)
    return added


def from_arguments(
    source: type | Callable[..., Any], args: argparse.Namespace, prefix: str = "", **given: Any
) -> Any:
    """Builds a dataclass from parsed :func:`add_arguments` options (and ``given`` values).

    For a function, returns the keyword arguments found in ``args`` (with ``given``) instead.
    Fields missing from ``args`` (skipped ones) keep their defaults unless ``given``.
    """
    names = [name for name, _, _ in _declared(source)]
    values = {name: getattr(args, prefix + name) for name in names if hasattr(args, prefix + name)}
    values.update(given)
    return source(**values) if isinstance(source, type) else values


def docstring_items(doc: str) -> dict[str, str]:
    """Name -> text of a Google docstring's ``Args:`` and ``Attributes:`` entries, one line each.

    Roles and literals (``:func:`x```, ````x````) become plain text, and ``%`` is escaped for
    argparse.
    """
    items: dict[str, list[str]] = {}
    current: list[str] | None = None
    section_indent = None
    item_indent = 0
    for line in doc.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped in _SECTIONS:
            section_indent, current = indent, None
            continue
        if section_indent is None:
            continue
        if stripped and indent <= section_indent:  # the next section, or the text after
            section_indent, current = None, None
            continue
        entry = re.match(r"\*{0,2}(\w+)(?: \(.*?\))?: ?(.*)", stripped)
        if entry and (current is None or indent <= item_indent):
            item_indent = indent
            current = items.setdefault(entry.group(1), [])
            current.append(entry.group(2))
        elif current is not None and stripped:
            current.append(stripped)
    return {name: _plain(" ".join(words)) for name, words in items.items()}


def _plain(text: str) -> str:
    text = _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text.strip()))
    return text.removesuffix(".").replace("%", "%%")


def _declared(source: type | Callable[..., Any]) -> list[tuple[str, Any, Mapping[str, Any]]]:
    """``(name, default, metadata)`` of each field or keyword-capable parameter, in order."""
    if isinstance(source, type):
        declared: list[tuple[str, Any, Mapping[str, Any]]] = []
        for field in _fields(source):
            if field.default is not dataclasses.MISSING:
                default = field.default
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            else:
                default = inspect.Parameter.empty
            declared.append((field.name, default, field.metadata))
        return declared
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        (parameter.name, parameter.default, {})
        for parameter in inspect.signature(source).parameters.values()
        if parameter.kind in kinds
    ]


def _fields(source: Any) -> tuple[dataclasses.Field, ...]:
    if not dataclasses.is_dataclass(source):
        raise TypeError(f"{_name(source)} is not a dataclass")
    return dataclasses.fields(source)


def _unwrap(annotation: Any, metadata: Mapping[str, Any]) -> tuple[Any, Flag]:
    """The annotation without ``Annotated``, and the :class:`Flag` of the metadata or of it."""
    flag = metadata.get("flag", Flag())
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        flag = next((extra for extra in extras if isinstance(extra, Flag)), flag)
    return annotation, flag


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _is_optional(annotation: Any) -> bool:
    return _is_union(annotation) and type(None) in typing.get_args(annotation)


def _without_none(annotation: Any) -> Any:
    rest = tuple(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007 (a runtime union)


def _argparse_keywords(parameter: Parameter) -> dict[str, Any]:
    """``add_argument`` keywords of one option: type, choices, nargs or action, default, help."""
    annotation, flag = parameter.annotation, parameter.flag
    required = parameter.default is inspect.Parameter.empty
    keywords: dict[str, Any] = {"help": _help(parameter)}
    if required:
        keywords["required"] = True
    else:
        keywords["default"] = parameter.default
    if annotation is bool:
        keywords["action"] = argparse.BooleanOptionalAction
        return keywords
    origin = typing.get_origin(annotation)
    if origin in (tuple, list):
        items = typing.get_args(annotation)
        if origin is tuple and (len(items) != 2 or items[1] is not Ellipsis):
            raise TypeError(f"{parameter.name}: only tuple[X, ...] has a command-line form")
        read, choices = _reader(parameter, items[0], flag)
        keywords.update(
            nargs="+", type=_comma_separated(read, choices), action=_Collect, collection=origin
        )
        keywords["metavar"] = _metavar(parameter, choices)
        return keywords
    read, choices = _reader(parameter, annotation, flag)
    keywords["type"] = read
    keywords["metavar"] = _metavar(parameter, choices)
    if choices is not None:
        keywords["choices"] = choices
    return keywords


def _reader(
    parameter: Parameter, annotation: Any, flag: Flag
) -> tuple[Callable[[str], Any], Sequence[Any] | None]:
    """How to read one value from text, and the values allowed (None: any)."""
    if flag.type is not None:
        return flag.type, flag.choices
    if typing.get_origin(annotation) is typing.Literal:
        values = typing.get_args(annotation)
        kinds = {type(value) for value in values}
        if len(kinds) != 1 or not kinds <= set(_SCALARS):
            raise TypeError(f"{parameter.name}: Literal values must all be int, float or str")
        return kinds.pop(), values
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_reader(annotation), tuple(annotation)
    if annotation in _SCALARS:
        return annotation, flag.choices
    raise TypeError(
        f"{parameter.name}: a {annotation!r} has no command-line form; skip it and add the "
        "option by hand"
    )


def _enum_reader(kind: type[enum.Enum]) -> Callable[[str], enum.Enum]:
    def read(text: str) -> enum.Enum:
        for member in kind:
            if text in (member.name, str(member.value)):
                return member
        raise argparse.ArgumentTypeError(f"expected one of {_names(kind)}, got {text!r}")

    read.__name__ = kind.__name__
    return read


def _comma_separated(
    read: Callable[[str], Any], choices: Sequence[Any] | None
) -> Callable[[str], list[Any]]:
    """An argparse type reading ``a,b,c`` into items, each checked against ``choices``."""

    def parse(text: str) -> list[Any]:
        items = [read(item.strip()) for item in text.split(",") if item.strip()]
        if not items or (choices is not None and any(item not in choices for item in items)):
            expected = f"a subset of {_names(choices)}" if choices is not None else "values"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return items

    parse.__name__ = getattr(read, "__name__", "value")
    return parse


class _Collect(argparse.Action):
    """Joins the comma-separated items of every value into one tuple (or list)."""

    def __init__(self, *args: Any, collection: type = tuple, **kwargs: Any) -> None:
        self.collection = collection
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, self.collection(item for value in values for item in value))


def _help(parameter: Parameter) -> str:
    default = parameter.default
    if default is inspect.Parameter.empty or default is None:
        return parameter.help
    if parameter.annotation is bool:
        default = parameter.option if default else "--no-" + parameter.option.removeprefix("--")
    elif isinstance(default, tuple | list):
        default = ",".join(map(str, default))
    elif isinstance(default, enum.Enum):
        default = default.name
    return f"{parameter.help} (default: {str(default).replace('%', '%%')})"


def _metavar(parameter: Parameter, choices: Sequence[Any] | None) -> str:
    if choices is None:  # named after the option, as argparse does
        return parameter.option.removeprefix("--").replace("-", "_").upper()
    return "{" + _names(choices) + "}"


def _names(values: Iterable[Any]) -> str:
    return ",".join(value.name if isinstance(value, enum.Enum) else str(value) for value in values)


def _name(source: Any) -> str:
    return getattr(source, "__qualname__", repr(source))


__all__ = ["Flag", "Parameter", "add_arguments", "docstring_items", "from_arguments", "parameters"]
