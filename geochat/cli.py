"""The ``geochat`` command: one verb per job, each registered as a ``geochat.verbs`` entry point.

Verbs live in the package that owns them (``geochat build`` in ``data_builders``, ``geochat app``
in ``app``...). Entry points keep the dependency one way: ``geochat`` never imports those
packages, it only finds what the installed distribution declares.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points

VERB_GROUP = "geochat.verbs"


def _verbs() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=VERB_GROUP)}


def _usage(verbs: dict[str, EntryPoint]) -> str:
    lines = ["usage: geochat <verb> [options]   (geochat <verb> --help for a verb's options)", ""]
    lines += ["verbs:"] + [f"  {name}" for name in sorted(verbs)]
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
