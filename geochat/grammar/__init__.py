"""Text <-> geometry: geochat's grammar v1 and the formats of other systems (dialects).

The canonical grammar (DESIGN.md, "Geometry grammar, version 1") writes coordinates as integers
0-1000 per axis of the original image::

    There are <ref>two ships</ref><box>[[120,345,410,502],[600,80,700,150]]</box>.
    <ref>the pier</ref><quad>[[500,100,620,140,590,260,470,220]]</quad>
    <seg>16|0*16;0*5,1*6,0*5;...</seg>        <none>

:func:`parse` turns an answer into :class:`GroundedObject` items in pixel coordinates,
tolerantly (model output: never raises, lists problems) or strictly (datasets: raises
:class:`GrammarError`); :func:`readable` gives the text of an answer without an image or still
streaming, for display. :func:`format` and the ``format_*`` helpers write geometry back.
Dialects: ``canonical``, ``geochat`` (GeoChat), ``geoground`` (GeoGround), ``qwen2vl``
(Qwen2-VL), ``qwen25vl`` (Qwen2.5-VL) and ``qwen3vl`` (Qwen3-VL); each documents its
coordinate range and angle.
"""

from geochat.grammar.base import Dialect
from geochat.grammar.canonical import (
    DEFAULT_GRID,
    GRID_SIDES,
    NONE,
    CanonicalDialect,
    format_hbbs,
    format_mask,
    format_quads,
    format_ref,
    format_region,
)
from geochat.grammar.core import GrammarError, GroundedObject, Kind, Parsed
from geochat.grammar.geochat_dialect import GeoChatDialect
from geochat.grammar.geoground import GeoGroundDialect
from geochat.grammar.qwen import Qwen2VLDialect, Qwen3VLDialect, Qwen25VLDialect
from geochat.grammar.registry import DIALECTS, format, get_dialect, parse, readable

__all__ = [
    "DEFAULT_GRID",
    "DIALECTS",
    "GRID_SIDES",
    "NONE",
    "CanonicalDialect",
    "Dialect",
    "GeoChatDialect",
    "GeoGroundDialect",
    "GrammarError",
    "GroundedObject",
    "Kind",
    "Parsed",
    "Qwen2VLDialect",
    "Qwen3VLDialect",
    "Qwen25VLDialect",
    "format",
    "format_hbbs",
    "format_mask",
    "format_quads",
    "format_ref",
    "format_region",
    "get_dialect",
    "parse",
    "readable",
]
