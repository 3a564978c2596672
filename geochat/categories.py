"""One category vocabulary for every source of records.

Public datasets and the OSM tag table spell the same thing differently: DOTA writes
``storage-tank``, DIOR and RRSIS-D ``storagetank``, the tag table ``storage tank``; DOTA's
``baseball-diamond`` is DIOR's ``baseballfield``. Records carry one canonical name in
``category`` (singular, lower-case words) and the label as the source wrote it in
``source_category``, so scores and counts agree across sources and nothing is lost.

:func:`normalise` maps every known spelling to its canonical name: it compares labels with
case, spaces, hyphens and underscores removed, so ``Storage_Tank``, ``storage-tank`` and
``storagetank`` meet, and it knows the synonyms listed in :data:`CATEGORIES`. Sources covered:
DOTA v1.0, v1.5 and v2.0 (:data:`DOTA_CLASSES`), DIOR / DIOR-RSVG and RRSIS-D (the 20 DIOR
classes, :data:`DIOR_CLASSES`), the class words of refGeo's and GeoChat's phrases, and the
categories of the OSM tag table (``data_builders/tags.yaml``, whose names are canonical).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class CategoryError(ValueError):
    """A label that no source spelling of the vocabulary matches."""


@dataclass(frozen=True)
class Category:
    """One canonical category.

    Attributes:
        name: Canonical name: singular, lower-case words.
        plural: Its plural, for prompts and answers.
        aliases: Other spellings and synonyms used by sources (matched like names).
    """

    name: str
    plural: str
    aliases: tuple[str, ...] = ()


# The category of an object whose source names no category of the vocabulary (its record
# keeps the source's words in ``source_category``).
UNKNOWN = "object"

CATEGORIES: tuple[Category, ...] = (
    Category(UNKNOWN, "objects", ("thing",)),
    # Vehicles and craft (DOTA, DIOR, OSM, GeoChat).
    Category("plane", "planes", ("airplane", "aeroplane", "aircraft")),
    Category("helicopter", "helicopters"),
    Category("ship", "ships", ("boat", "vessel")),
    Category("vehicle", "vehicles"),
    Category("small vehicle", "small vehicles"),
    Category("large vehicle", "large vehicles"),
    Category("car", "cars"),
    Category("truck", "trucks"),
    # Structures.
    Category("storage tank", "storage tanks", ("tank", "oil tank")),
    Category("container crane", "container cranes", ("crane",)),
    Category("bridge", "bridges"),
    Category("overpass", "overpasses"),
    Category("harbor", "harbors", ("harbour",)),
    Category("dam", "dams"),
    Category("chimney", "chimneys"),
    Category("windmill", "windmills", ("wind turbine",)),
    Category("building", "buildings"),
    Category("stadium", "stadiums"),
    Category("train station", "train stations", ("railway station",)),
    Category("expressway service area", "expressway service areas"),
    Category("expressway toll station", "expressway toll stations", ("toll station",)),
    Category("airport", "airports"),
    Category("helipad", "helipads"),
    Category("runway", "runways"),
    Category("apron", "aprons"),
    Category("roundabout", "roundabouts"),
    # Sports grounds.
    Category("baseball field", "baseball fields", ("baseball diamond",)),
    Category("tennis court", "tennis courts"),
    Category("basketball court", "basketball courts"),
    Category("ground track field", "ground track fields", ("athletics track",)),
    Category("soccer field", "soccer fields", ("soccer ball field", "football field")),
    Category("golf field", "golf fields", ("golf course",)),
    Category("swimming pool", "swimming pools", ("pool",)),
    Category("sports pitch", "sports pitches"),
    # Land use and land cover (the OSM tag table).
    Category("parking lot", "parking lots", ("parking",)),
    Category("road", "roads"),
    Category("footpath", "footpaths"),
    Category("railway", "railways"),
    Category("river", "rivers"),
    Category("stream", "streams"),
    Category("water", "water bodies"),
    Category("tree", "trees"),
    Category("forest", "forests"),
    Category("park", "parks"),
    Category("grass", "grass areas"),
    Category("farmland", "farmlands"),
    Category("residential area", "residential areas"),
    Category("industrial area", "industrial areas"),
)

# DOTA's classes by version (DOTA devkit; v1.5 adds one class, v2.0 two more).
_DOTA_V1_0 = (
    "plane",
    "ship",
    "storage-tank",
    "baseball-diamond",
    "tennis-court",
    "basketball-court",
    "ground-track-field",
    "harbor",
    "bridge",
    "large-vehicle",
    "small-vehicle",
    "helicopter",
    "roundabout",
    "soccer-ball-field",
    "swimming-pool",
)
DOTA_CLASSES: dict[str, tuple[str, ...]] = {
    "1.0": _DOTA_V1_0,
    "1.5": (*_DOTA_V1_0, "container-crane"),
    "2.0": (*_DOTA_V1_0, "container-crane", "airport", "helipad"),
}
# The 20 classes of DIOR as DIOR-RSVG and RRSIS-D write them.
DIOR_CLASSES = (
    "airplane",
    "airport",
    "baseballfield",
    "basketballcourt",
    "bridge",
    "chimney",
    "dam",
    "Expressway-Service-area",
    "Expressway-toll-station",
    "golffield",
    "groundtrackfield",
    "harbor",
    "overpass",
    "ship",
    "stadium",
    "storagetank",
    "tenniscourt",
    "trainstation",
    "vehicle",
    "windmill",
)

_SEPARATORS = re.compile(r"[\s_\-]+")
_WORDS = re.compile(r"[a-z]+")
_BY_NAME = {category.name: category for category in CATEGORIES}


def _key(label: str) -> str:
    """A label with case, spaces, hyphens and underscores removed."""
    return _SEPARATORS.sub("", label.strip().lower())


def _spellings() -> dict[str, str]:
    table: dict[str, str] = {}
    for category in CATEGORIES:
        for spelling in (category.name, category.plural, *category.aliases):
            key = _key(spelling)
            if table.setdefault(key, category.name) != category.name:
                raise AssertionError(f"{spelling!r} names two categories")
    return table


_SPELLINGS = _spellings()
# Spellings as word sequences, to find a category inside a phrase.
_PHRASE_SPELLINGS = tuple(
    (tuple(_WORDS.findall(spelling)), category.name)
    for category in CATEGORIES
    for spelling in (category.name, category.plural, *category.aliases)
)


def names() -> tuple[str, ...]:
    """The canonical category names, in vocabulary order."""
    return tuple(_BY_NAME)


def category(name: str) -> Category:
    """The canonical category of that name.

    Raises:
        CategoryError: if the name is not canonical (see :func:`normalise` for labels).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise CategoryError(f"{name!r} is not a canonical category name") from None


def lookup(label: str) -> str | None:
    """The canonical name of a source label, or None when no spelling matches."""
    return _SPELLINGS.get(_key(label))


def normalise(label: str) -> str:
    """The canonical name of a source label (``"storage-tank"`` -> ``"storage tank"``).

    Raises:
        CategoryError: if no spelling of the vocabulary matches the label.
    """
    found = lookup(label)
    if found is None:
        raise CategoryError(f"unknown category {label!r}: it matches no spelling of the vocabulary")
    return found


def find_in_phrase(phrase: str) -> str | None:
    """The canonical category a free-text phrase names, or None.

    The whole phrase is tried as a label first (``"storage-tank"``); then the first run of its
    words that spells a category, the longest at that place: in English the head noun comes
    before the phrases that qualify it, so ``"the small white car next to the storage tank"``
    names a car, and ``"the parking lot"`` a parking lot rather than "parking".
    """
    found = lookup(phrase)
    if found is not None:
        return found
    words = _WORDS.findall(phrase.lower())
    best: tuple[int, int, str] | None = None  # (start, -length, name): first, then longest
    for spelled, name in _PHRASE_SPELLINGS:
        size = len(spelled)
        for start in range(len(words) - size + 1):
            if tuple(words[start : start + size]) == spelled:
                candidate = (start, -size, name)
                best = candidate if best is None or candidate[:2] < best[:2] else best
                break
    return None if best is None else best[2]


def plural(name: str) -> str:
    """The plural of a canonical category name."""
    return category(name).plural
