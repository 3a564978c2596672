"""Constrained decoding of grounded answers: a regex of grammar v1 and a logits processor for it.

:data:`GROUNDING_REGEX` matches a canonical grammar v1 answer (DESIGN.md) that holds at least
one geometry: free text without ``<``, and geometry tags, each optionally after a phrase
``<ref>...</ref>``. Numbers are integers 0-1000 written without leading zeros, boxes have 4 of
them, quads 8, a ``<seg>`` has exactly N rows of ``v*count`` runs on an N = 16 or 32 grid (that
the runs of a row sum to N is beyond a regex; tolerant parsing repairs such rows). It uses only
plain groups, classes and counted repetition, which every structured-output backend of vLLM
compiles (Python's ``re`` and ``regex`` read it too).

vLLM applies it through ``{"structured_outputs": {"regex": GROUNDING_REGEX}}``;
:class:`GroundingLogitsProcessor` applies it in transformers' ``generate``; :func:`constraint_of`
reads either spelling of the request.
"""

from __future__ import annotations

from collections.abc import Sequence

import regex
import torch
from transformers import LogitsProcessor
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from geochat.grammar.tags import BOX, GRAMMAR_SCALE, GRID_SIDES, NONE, QUAD, REF, SEG


def integer_pattern(largest: int) -> str:
    """A regex group matching the integers 0..``largest`` written without leading zeros."""
    digits = str(largest)
    # Numbers of as many digits as `largest`: below it from the first smaller digit on, or it.
    longest = []
    for place, digit in enumerate(digits):
        lowest = 1 if place == 0 else 0
        if int(digit) > lowest:
            tail = len(digits) - place - 1
            rest = f"[0-9]{{{tail}}}" if tail > 1 else "[0-9]" * tail
            longest.append(f"{digits[:place]}[{lowest}-{int(digit) - 1}]{rest}")
    longest.insert(0, digits)
    shorter = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 2 else []
    shorter += ["[1-9]"] if len(digits) == 2 else []
    return "(" + "|".join([*longest, *shorter, "0"] if largest else ["0"]) + ")"


def _tag(pair: tuple[str, str], content: str) -> str:
    return f"{pair[0]}{content}{pair[1]}"


def _grid(side: int, row: str) -> str:
    return rf"{side}\|{row}(;{row}){{{side - 1}}}"


_NUMBER = integer_pattern(GRAMMAR_SCALE)
_BOX = rf"\[{_NUMBER}(,{_NUMBER}){{3}}\]"
_QUAD = rf"\[{_NUMBER}(,{_NUMBER}){{7}}\]"
_COUNT = f"[0-9]{{1,{len(str(max(GRID_SIDES)))}}}"
_ROW = rf"[01]\*{_COUNT}(,[01]\*{_COUNT})*"
_SEG = _tag(SEG, "(" + "|".join(_grid(side, _ROW) for side in GRID_SIDES) + ")")
_BOXES = _tag(BOX, rf"\[{_BOX}(,{_BOX})*\]")
_QUADS = _tag(QUAD, rf"\[{_QUAD}(,{_QUAD})*\]")
_GEOMETRY = f"({_BOXES}|{_QUADS}|{_SEG}|{NONE})"
_GROUNDED = rf"({_tag(REF, '[^<>]+')})?{_GEOMETRY}"
_TEXT = r"[^<]*"
GROUNDING_REGEX = rf"{_TEXT}({_GROUNDED}{_TEXT})+"

# vLLM's spelling of constrain="grounding" (its OpenAI server's request field and value).
STRUCTURED_OUTPUTS = {"regex": GROUNDING_REGEX}

# Native dialects of the backbone families (geochat.modeling.families), as their models write
# them (geochat.grammar's `write`): a served family is constrained to its own format.
# GeoChat: `<p>phrase</p> {<x0><y0><x1><y1>|<θ>}` joined by `<delim>`; values 0-100 of the
# padded square, a rotated box's corners a little beyond it (negative or above 100), θ -45..45.
_GC_VALUE = r"-?(0|[1-9][0-9]{0,2})"
_GC_BOX = rf"\{{<{_GC_VALUE}><{_GC_VALUE}><{_GC_VALUE}><{_GC_VALUE}>\|<-?(0|[1-9][0-9]?)>\}}"
_GC_GROUP = rf"(<p>[^<>{{}}]*</p> )?{_GC_BOX}(<delim>{_GC_BOX})*"
_GC_TEXT = r"[^<{]*"
# Qwen2.5-VL / Qwen3-VL: a ```json fenced list, one `{"bbox_2d": [...], "label": ...}` a line
# (pixels of the resized image for Qwen2.5-VL, 0-1000 for Qwen3-VL: both fit 0..99999).
_QW_VALUE = r"(0|[1-9][0-9]{0,4})"
_QW_ITEM = (
    rf'\t\{{"bbox_2d": \[{_QW_VALUE}, {_QW_VALUE}, {_QW_VALUE}, {_QW_VALUE}\]'
    r'(, "label": "[^"\\\n]*")?\}'
)
_QW_JSON = rf"```json\n\[(\n{_QW_ITEM}(,\n{_QW_ITEM})*)?\n\]\n```"
DIALECT_REGEXES = {
    "canonical": GROUNDING_REGEX,
    "geochat": rf"{_GC_TEXT}({_GC_GROUP}{_GC_TEXT})+",
    "qwen25vl": _QW_JSON,
    "qwen3vl": _QW_JSON,
}


def grounding_regex(dialect: str) -> str:
    """The regex of a grounded answer in a dialect, for vLLM's structured outputs.

    Raises:
        ValueError: For a dialect without one (geochat constrains its families' dialects).
    """
    if dialect not in DIALECT_REGEXES:
        raise ValueError(
            f"no grounding constraint for the {dialect!r} dialect; known: {sorted(DIALECT_REGEXES)}"
        )
    return DIALECT_REGEXES[dialect]


def constraint_of(constrain: str | None, structured_outputs: object = None) -> str | None:
    """The constraint a chat request asks for, whichever server's spelling it uses.

    geochat's API spells it ``"constrain": "grounding"``; vLLM's server ``"structured_outputs":
    {"regex": GROUNDING_REGEX}``. Both servers read both, so that no client's constraint is
    silently dropped.

    Args:
        constrain: geochat's field: None or "grounding".
        structured_outputs: vLLM's field: None or :data:`STRUCTURED_OUTPUTS`.

    Returns:
        "grounding" or None.

    Raises:
        ValueError: For another constraint (geochat constrains to its grammar only), or two
            fields that disagree.
    """
    if constrain not in (None, "grounding"):
        raise ValueError(f"constrain must be 'grounding' or null, not {constrain!r}")
    if structured_outputs is None:
        return constrain
    if structured_outputs != STRUCTURED_OUTPUTS:
        raise ValueError(
            "structured_outputs can only be {'regex': GROUNDING_REGEX} (geochat's grounding "
            "grammar, the same as constrain='grounding'); other constraints are not supported"
        )
    return "grounding"


# Candidates kept per step: the best-scored tokens that keep the answer a prefix of a match.
# One is enough for greedy decoding; more leave sampling some choice.
ALLOWED_PER_STEP = 20


class GroundingLogitsProcessor(LogitsProcessor):
    """Masks every token that would take the answer out of a grounding regex.

    At each step the candidates are tried in order of score, and the first
    :data:`ALLOWED_PER_STEP` whose text keeps the answer a prefix of a match are kept (the
    ``regex`` module's partial matching); the end-of-turn tokens are allowed only once the
    answer is a full match. Cheap when the model mostly agrees with the grammar (a few checks
    per step), up to one check per vocabulary entry when it does not. An answer cut by
    ``max_new_tokens`` is a prefix of a match, not a match. Batch size 1.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompt_length: int,
        end_token_ids: Sequence[int],
        pieces: Sequence[str],
        pattern: str = GROUNDING_REGEX,
    ) -> None:
        """Prepares the constraint for one generation.

        Args:
            tokenizer: Decodes the answer so far.
            prompt_length: Tokens of the prompt: what follows them is the answer.
            end_token_ids: Tokens that end the answer (eos).
            pieces: The text of every token id (see :func:`token_pieces`).
            pattern: The answer's regex: :data:`GROUNDING_REGEX`, or a family's dialect's
                (:func:`grounding_regex`).
        """
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.end_token_ids = list(end_token_ids)
        self.pieces = pieces
        self.pattern = regex.compile(pattern)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Returns `scores` `[1, V]` with every disallowed token at -inf."""
        # One sequence decodes to a str; transformers types every decode as str | list[str].
        answer: str = self.tokenizer.decode(input_ids[0, self.prompt_length :])  # type: ignore[assignment]
        allowed = self._allowed(answer, torch.argsort(scores[0], descending=True).tolist())
        masked = torch.full_like(scores, float("-inf"))
        masked[0, allowed] = scores[0, allowed]
        # transformers types scores with torch's legacy FloatTensor, which no torch op returns.
        return masked  # type: ignore[return-value]

    def _allowed(self, answer: str, candidates: list[int]) -> list[int]:
        allowed = []
        if self.pattern.fullmatch(answer) is not None:
            allowed += self.end_token_ids
        for token in candidates:
            if len(allowed) >= ALLOWED_PER_STEP:
                break
            piece = self.pieces[token] if token < len(self.pieces) else ""
            if piece and self.pattern.fullmatch(answer + piece, partial=True) is not None:
                allowed.append(token)
        return allowed or self.end_token_ids  # nothing fits: end rather than break the grammar


def token_pieces(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The text of each token id alone (empty for special tokens, which never fit the regex)."""
    special = set(tokenizer.all_special_ids)
    # One sequence decodes to a str; transformers types every decode as str | list[str].
    return [
        "" if token in special else tokenizer.decode([token])  # type: ignore[misc]
        for token in range(len(tokenizer))
    ]
