"""Procedural layout of a synthetic aerial scene: what lies where, with its OpenStreetMap tags.

Everything is in pixel coordinates of the final image (x right, y down); sizes are drawn in
metres and converted with the ground sample distance, so a scene keeps real proportions at any
GSD. A scene is built in this order: water (sea, river, lake; :mod:`.water`), an airfield in
airport scenes (:mod:`.airfield`), a road grid that stops short of water and runways, blocks (the
land between roads; :mod:`.roads`), one land use per block (:mod:`.land_use`), then the objects
of each block (:mod:`.objects`), placed by rejection sampling against the footprints already
placed (shapely), and last vehicles on roads and parking lots and ships on water
(:mod:`.movers`). :mod:`.features` says which layers' footprints may overlap.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import Polygon

from geochat.data_builders.scene.airfield import add_airfield
from geochat.data_builders.scene.builder import SceneBuilder
from geochat.data_builders.scene.features import Feature
from geochat.data_builders.scene.land_use import fill_block
from geochat.data_builders.scene.movers import add_apron_vehicles, add_ships, add_traffic
from geochat.data_builders.scene.recipes import RECIPES
from geochat.data_builders.scene.roads import add_roads, carve_blocks
from geochat.data_builders.scene.water import add_water


def layout_scene(
    rng: np.random.Generator, width: int, height: int, gsd: float, scene: str, density: float
) -> list[Feature]:
    """Lays out a whole scene.

    Args:
        rng: The only source of randomness.
        width: Image width in pixels.
        height: Image height in pixels.
        gsd: Metres per pixel.
        scene: One of :data:`SCENES`.
        density: Multiplier of object counts.

    Returns:
        The features, in the order they were placed.
    """
    recipe = RECIPES[scene]
    builder = SceneBuilder(rng, width, height, gsd, density)
    barriers, lakes = add_water(builder, recipe)
    aprons = []
    if recipe.airfield:
        airfield = add_airfield(builder)
        barriers.extend(airfield)
        aprons = airfield[1:]
    barrier_shapes = [builder.features[i].footprint for i in barriers]
    lake_shapes = [builder.features[i].footprint for i in lakes]
    barrier = shapely.union_all(barrier_shapes) if barrier_shapes else Polygon()
    road_barrier = shapely.union_all([barrier, *lake_shapes]) if lake_shapes else barrier
    roads = add_roads(builder, recipe, road_barrier)
    for block in carve_blocks(builder, roads, barrier):
        fill_block(builder, block, recipe, lakes, aprons)
    add_traffic(builder, roads)
    for apron in aprons:
        add_apron_vehicles(builder, apron)
    waters = [i for i, f in enumerate(builder.features) if f.look.painter == "water"]
    add_ships(builder, waters)
    return builder.features
