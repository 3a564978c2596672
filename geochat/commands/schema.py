"""``geochat schema``: prints the JSON Schema of geochat's files.

The committed copy, ``docs/record.schema.json``, is this command's output; a test keeps the two
equal.
"""

from __future__ import annotations

import argparse
import json

from geochat.records import record_json_schema

SCHEMAS = {"records": record_json_schema}


def schema_text(name: str) -> str:
    """The schema called ``name`` as indented JSON, ending with a newline."""
    return json.dumps(SCHEMAS[name](), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``geochat schema``: prints the JSON Schema of a records line (name: records).

    Returns 0 (argparse exits with 2 on an unknown name).
    """
    parser = argparse.ArgumentParser(
        prog="geochat schema",
        description="Print the JSON Schema of geochat's files: records (one JSONL line).",
    )
    parser.add_argument("name", choices=sorted(SCHEMAS), help="which schema")
    args = parser.parse_args(argv)
    print(schema_text(args.name), end="")
    return 0
