"""The ``geochat`` command: one verb per job, each registered as a ``geochat.verbs`` entry point.

Verbs live in the package that owns them (``geochat build`` in ``data_builders``, ``geochat app``
in ``app``...). Entry points keep the dependency one way: ``geochat`` never imports those
packages, it only finds what the installed distribution declares.

``geochat --help`` lists each verb with the first line of its function's docstring (a leading
````geochat <verb>``:`` dropped), read from the source without importing the verb: importing
one can take seconds (torch) or fail for want of an extra.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

VERB_GROUP = "geochat.verbs"


def _verbs() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=VERB_GROUP)}


def verb_summary(entry: EntryPoint) -> str:
    """What a verb does, in one line: the first line of its function's docstring.

    Returns:
        The line without a leading ````geochat <verb>``:``, or "" when the source cannot be
        read or the function has no docstring.
    """
    try:
        spec = importlib.util.find_spec(entry.module)
        if spec is None or spec.origin is None:
            return ""
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (ImportError, ValueError, OSError, SyntaxError):
        return ""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry.attr:
            lines = (ast.get_docstring(node) or "").strip().splitlines()
            line = lines[0] if lines else ""
            line = line.removeprefix(f"``geochat {entry.name}``:").strip()
            return line[:1].upper() + line[1:]
    return ""


def _usage(verbs: dict[str, EntryPoint]) -> str:
    lines = ["usage: geochat <verb> [options]   (geochat <verb> --help for a verb's options)", ""]
    width = max(map(len, verbs), default=0)
    lines += ["verbs:"] + [
        f"  {name:<{width}}  {verb_summary(verbs[name])}".rstrip() for name in sorted(verbs)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatches ``geochat <verb> ...`` to the verb's ``main(argv)``."""
    args = sys.argv[1:] if argv is None else argv
    verbs = _verbs()
    if not args or args[0] in {"-h", "--help"}:
        print(_usage(verbs))
        return 0 if args else 2
    verb, rest = args[0], args[1:]
    if verb not in verbs:
        print(f"geochat: unknown verb {verb!r}\n\n{_usage(verbs)}", file=sys.stderr)
        return 2
    try:
        verb_main = verbs[verb].load()
    except ImportError as error:
        print(
            f"geochat {verb}: cannot load ({error}); install the extra it needs, "
            "e.g. pip install 'geochat[data,train,app]'",
            file=sys.stderr,
        )
        return 2
    return int(verb_main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
