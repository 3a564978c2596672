"""Colours and textures of the synthetic painter.

Palettes are chosen so that categories and the colour attributes the tags name stay apart (a
blue roof is not the blue of a pool).
"""

from __future__ import annotations

from geochat.data_builders.render import Colour, Texture

WHITE_PAINT: Colour = (226.0, 226.0, 216.0)
YELLOW_PAINT: Colour = (208.0, 176.0, 62.0)
ROOF: dict[str, Colour] = {
    "red": (170.0, 74.0, 58.0),
    "brown": (122.0, 86.0, 62.0),
    "grey": (128.0, 128.0, 134.0),
    "white": (224.0, 224.0, 218.0),
    "blue": (66.0, 98.0, 156.0),
}
VEHICLE: dict[str, Colour] = {
    "white": (228.0, 228.0, 225.0),
    "black": (32.0, 32.0, 36.0),
    "silver": (176.0, 179.0, 184.0),
    "grey": (108.0, 110.0, 114.0),
    "red": (172.0, 36.0, 36.0),
    "blue": (42.0, 72.0, 146.0),
}
GROUND: dict[str, tuple[Colour, Texture]] = {
    "residential": ((94.0, 124.0, 72.0), Texture(grain=0.03, mottle=0.07, patches=0.07)),
    "industrial": ((150.0, 146.0, 136.0), Texture(grain=0.05, mottle=0.05, patches=0.07)),
    "park": ((86.0, 134.0, 64.0), Texture(grain=0.03, mottle=0.05, patches=0.08)),
    "grass": ((110.0, 140.0, 74.0), Texture(grain=0.03, mottle=0.06, patches=0.07)),
    "forest": ((42.0, 72.0, 40.0), Texture(grain=0.06, mottle=0.15, patches=0.08, relief=0.25)),
    "farmland": ((0.0, 0.0, 0.0), Texture(grain=0.03, mottle=0.04, patches=0.1)),
}
CROPS: dict[str, Colour] = {
    "green": (106.0, 142.0, 64.0),
    "yellow": (196.0, 178.0, 108.0),
    "brown": (140.0, 112.0, 84.0),
    "pale": (168.0, 166.0, 118.0),
}
WATER: dict[str, Colour] = {
    "harbour": (30.0, 60.0, 88.0),
    "lake": (44.0, 84.0, 86.0),
    "pond": (50.0, 90.0, 78.0),
    "river": (52.0, 86.0, 84.0),
    "stream": (60.0, 90.0, 78.0),
}
ASPHALT: dict[str, Colour] = {
    "primary": (72.0, 72.0, 76.0),
    "secondary": (80.0, 80.0, 84.0),
    "residential": (92.0, 92.0, 95.0),
    "service": (112.0, 110.0, 106.0),
    "footway": (178.0, 168.0, 148.0),
}
CONCRETE: Colour = (168.0, 167.0, 160.0)
CONTAINERS: tuple[Colour, ...] = (
    (168.0, 52.0, 40.0),
    (40.0, 80.0, 150.0),
    (60.0, 120.0, 70.0),
    (200.0, 120.0, 40.0),
    (130.0, 130.0, 130.0),
    (215.0, 215.0, 210.0),
)
PAVED = Texture(grain=0.05, mottle=0.03, patches=0.06)
SMOOTH = Texture(grain=0.03, mottle=0.03)
