"""The kinds of synthetic scene and what each is made of."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SCENES = ("suburban", "industrial", "harbour", "airport", "mixed")


@dataclass(frozen=True)
class Recipe:
    """What a kind of scene is made of.

    Attributes:
        road_spacing_m: Range of the distance between parallel roads.
        major_roads: Classes of the one through road each grid direction may have.
        minor_road: Class of the other roads.
        ground: Land use of blocks, with relative weights (``bare`` leaves a block unmapped).
        water: Probability of a sea, a river and a lake.
        tank_farm: Probability that an industrial block has storage tanks.
        airfield: Whether the scene has a runway and an apron.
    """

    road_spacing_m: tuple[float, float]
    major_roads: tuple[str, ...]
    minor_road: str
    ground: Mapping[str, float]
    water: Mapping[str, float]
    tank_farm: float = 0.4
    airfield: bool = False


RECIPES = {
    "suburban": Recipe(
        (70.0, 130.0),
        ("secondary",),
        "residential",
        {"residential": 8, "park": 1.2, "grass": 0.6, "forest": 0.5, "farmland": 0.4, "bare": 0.2},
        {"lake": 0.45, "river": 0.25},
    ),
    "industrial": Recipe(
        (110.0, 200.0),
        ("primary", "secondary"),
        "service",
        {"industrial": 8, "grass": 1, "residential": 0.6, "forest": 0.3, "bare": 0.5},
        {"river": 0.3, "lake": 0.15},
        tank_farm=0.5,
    ),
    "harbour": Recipe(
        (100.0, 170.0),
        ("secondary",),
        "service",
        {"industrial": 6, "residential": 1.5, "grass": 1, "bare": 0.5},
        {"sea": 1.0},
        tank_farm=0.7,
    ),
    "airport": Recipe(
        (150.0, 260.0),
        ("secondary",),
        "service",
        {"grass": 6, "industrial": 2, "farmland": 1},
        {},
        airfield=True,
    ),
    "mixed": Recipe(
        (80.0, 170.0),
        ("primary", "secondary"),
        "residential",
        {
            "residential": 4,
            "industrial": 2,
            "park": 1.5,
            "farmland": 1.5,
            "forest": 1,
            "grass": 1,
            "bare": 0.3,
        },
        {"lake": 0.35, "river": 0.25, "sea": 0.2},
    ),
}
