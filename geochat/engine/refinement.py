"""SAM refinement of a reply: which objects get a full-resolution mask, and the mask as geometry.

One rule for every caller (the engine with ``load(..., sam=PATH)``, the REST API's
``/v1/segment``): a text-mask (``<seg>``) is always refined, since it is coarse by nature; a box
or quad only when the question asked for a mask (:func:`geochat.prompts.asks_for_mask`), since a
box answer to a box question is already the answer. What the model wrote is kept as it is: the
masks go beside it (``Reply.refined``), and :meth:`Reply.refined_objects` gives the objects with
each refined one as a kind-``mask`` object.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from geochat import geometry
from geochat.georef import to_geojson
from geochat.grammar import GroundedObject

if TYPE_CHECKING:
    from geochat.engine.assistant import Reply
    from geochat.imagery import LoadedImage
    from geochat.refine import Refiner


def refinable(obj: GroundedObject, mask_asked: bool) -> bool:
    """Whether SAM refines an object: a mask always, a box or quad when a mask was asked for."""
    return obj.kind == "mask" or (mask_asked and obj.kind in ("hbb", "quad"))


def mask_object(obj: GroundedObject, mask: dict[str, Any]) -> GroundedObject:
    """An object with its geometry replaced by a full-resolution mask (phrase and span kept).

    Args:
        obj: The parsed object.
        mask: COCO RLE at the image's size.

    Returns:
        A kind-``mask`` object whose ``hbb`` is the box of the mask's pixels (None when empty).
    """
    box = geometry.mask_to_hbb(mask)
    hbb = None if box is None else box.tolist()
    return dataclasses.replace(obj, kind="mask", mask=mask, hbb=hbb, quad=None, grid=None)


def refine_reply(reply: Reply, image: LoadedImage, refiner: Refiner, mask_asked: bool) -> Reply:
    """The reply with SAM's masks for its refinable objects (see :func:`refinable`).

    Args:
        reply: The engine's reply about ``image``.
        image: The image the reply locates objects in.
        refiner: SAM.
        mask_asked: Whether the question asked for a mask (boxes and quads are refined too).

    Returns:
        A new reply with ``refined`` (one entry per object, None where not refined),
        ``refined_geojson`` (lon/lat, georeferenced images only) and ``timings["refine_s"]``
        (added to ``total_s``); the reply itself when nothing is refinable.
    """
    objects = reply.parsed.objects
    chosen = [index for index, obj in enumerate(objects) if refinable(obj, mask_asked)]
    if not chosen:
        return reply
    started = time.perf_counter()
    masks = refiner.refine(image.image, [objects[index] for index in chosen])
    refined: list[Any] = [None] * len(objects)
    for index, mask in zip(chosen, masks, strict=True):
        refined[index] = mask
    seconds = time.perf_counter() - started
    timings = {
        **reply.timings,
        "refine_s": seconds,
        "total_s": reply.timings.get("total_s", 0.0) + seconds,
    }
    done = dataclasses.replace(reply, refined=refined, timings=timings)
    if image.georef is not None:
        done.refined_geojson = to_geojson(done.refined_objects(), image.georef)
    return done
