"""The README's ``bash`` blocks and the ``geochat`` commands in them, for the tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).parents[1]
# The project README and the bundled model's card, whose commands are the README's too.
README = "\n".join(
    (ROOT / name).read_text(encoding="utf-8")
    for name in ("README.md", "geochat/assets/geochat-nano/README.md")
)


def bash_blocks() -> list[str]:
    """Every ```` ```bash ```` block of the README, in order."""
    return re.findall(r"```bash\n(.*?)```", README, re.DOTALL)


def commands(block: str) -> list[str]:
    """A block's commands: continued lines joined, comment lines left out."""
    lines = block.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def geochat_commands() -> list[list[str]]:
    """Every ``geochat <verb> ...`` of the README's bash blocks, as words (comments left out).

    A command after ``&&`` counts too; ``<placeholders>`` become one word (``PLACEHOLDER``).
    """
    found = []
    for block in bash_blocks():
        for line in commands(block):
            for step in line.split("&&"):
                step = re.sub(r"<[^>]+>", "PLACEHOLDER", step)
                words = shlex.split(step, comments=True)
                if words and words[0] == "geochat":
                    found.append(words)
    return found
