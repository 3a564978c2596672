"""SAM refinement: boxes, quads and coarse text-masks become full-resolution masks.

A grounded answer locates objects roughly: a horizontal box, an oriented box (quad) or a
text-mask on a 16 or 32 cell grid. :class:`Refiner` prompts the Segment Anything Model
(transformers' ``SamModel``, no torchvision needed) with that geometry and returns one
full-resolution COCO RLE mask per object, in pixels of the original image.

Prompts, per object kind:

- ``hbb``: the box.
- ``quad``: its enclosing box plus a positive point at its centre (the box alone is ambiguous for
  a diagonal object: most of it is background); the mask is then cut to the quad, grown by
  ``quad_margin`` of its shorter side, so that nothing leaks into the box's empty corners.
- ``mask``: one prompt per connected part of the coarse mask (a text-mask can cover several
  objects): the part's box plus a positive point at its most interior pixel; the answers are
  merged. With ``coarse_mask_prompt=True`` the part also goes in as SAM's dense mask prompt.
  That is off by default: SAM was trained with its own low-resolution logits there, and binary
  masks from elsewhere are reported to degrade its answers (facebookresearch/segment-anything
  issues #169, #447).
- ``none``: no prompt, and None in the result.

SAM answers each prompt with three masks; the one with the best predicted IoU is kept.

Checkpoints load as :mod:`geochat.sam_checkpoints` says.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.nn.functional import interpolate, pad
from transformers import SamModel, SamProcessor

from geochat import geometry
from geochat.fileio import atomic_folder
from geochat.geometry import RLE
from geochat.modeling.configuration import sub_config
from geochat.sam_checkpoints import SamCheckpointError, load_sam

# A binary coarse mask as SAM logits: +/- this value (SAM's own logits are of this order).
MASK_PROMPT_LOGIT = 8.0
# SAM's threshold on mask logits.
MASK_THRESHOLD = 0.0


class ObjectGeometry(Protocol):
    """What :meth:`Refiner.refine` reads of a parsed answer's object (see ``geochat.grammar``).

    Attributes:
        kind: ``"hbb"``, ``"quad"``, ``"mask"`` or ``"none"``.
        hbb: ``[x0, y0, x1, y1]`` in pixels, for kind ``"hbb"``.
        quad: Four ``[x, y]`` corners in pixels, for kind ``"quad"``.
        mask: COCO RLE, for kind ``"mask"``: at the image's size, or at any size covering the
            whole image (a text-mask grid), which is then resized.
    """

    kind: str
    hbb: Any
    quad: Any
    mask: Any


@dataclass(frozen=True)
class RefinedMask:
    """SAM's mask for one object.

    Attributes:
        mask: COCO RLE ``{"size": [height, width], "counts": str}`` at the original image size.
        score: SAM's predicted IoU of the mask (the mean over the parts of a coarse mask); 0 for
            an object wholly outside the image or an empty coarse mask, whose mask is empty.
    """

    mask: RLE
    score: float


@dataclass(frozen=True)
class _Prompt:
    """One SAM prompt, in pixels of the original image.

    Attributes:
        owner: Index of the object it refines.
        box: ``[x0, y0, x1, y1]``.
        point: ``[x, y]`` of a positive point (pixel-index convention: SAM adds 0.5), or None.
        parts: ``[H, W]`` integer labels of a coarse mask's parts (shared by the object's
            prompts), or None; this prompt's part is the one labelled ``part``.
        part: Label of this prompt's part in ``parts``.
    """

    owner: int
    box: np.ndarray
    point: np.ndarray | None = None
    parts: np.ndarray | None = None
    part: int = 0


@dataclass(frozen=True)
class _ImageEmbedding:
    """SAM's image embedding and the sizes needed to map pixels to its frame and back.

    Attributes:
        key: Digest of the image, to reuse the embedding for the same image.
        features: ``[1, C, h, w]`` output of the vision encoder.
        original_size: ``(H, W)`` of the image.
        reshaped_size: ``(H', W')`` of the image resized to SAM's longest side (before padding).
    """

    key: str
    features: torch.Tensor
    original_size: tuple[int, int]
    reshaped_size: tuple[int, int]

    def to_model_frame(self, xy: np.ndarray) -> np.ndarray:
        """Scales pixel coordinates (last axis alternating x, y) to the resized image."""
        (height, width), (new_height, new_width) = self.original_size, self.reshaped_size
        scale = np.tile([new_width / width, new_height / height], xy.shape[-1] // 2)
        return xy * scale


class Refiner:
    """Turns boxes, quads and coarse masks into full-resolution masks with SAM.

    Example:
        >>> refiner = Refiner.from_pretrained("facebook/sam-vit-base")  # doctest: +SKIP
        >>> refiner.refine(image, reply.objects)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: SamModel,
        processor: SamProcessor,
        *,
        multimask: bool = True,
        quad_margin: float = 0.1,
        coarse_mask_prompt: bool = False,
        max_batch: int = 64,
    ) -> None:
        """Wraps a SAM model and its processor.

        Args:
            model: A transformers ``SamModel``, on the device to run on.
            processor: Its ``SamProcessor``; its longest side must be the model's image size.
            multimask: Ask SAM for three masks per prompt and keep the best by predicted IoU
                (else SAM's single-mask output).
            quad_margin: A quad's mask is cut to the quad grown by this fraction of its shorter
                side (at least one pixel); None keeps SAM's mask uncut.
            coarse_mask_prompt: Also give a coarse mask to SAM as its dense mask prompt.
            max_batch: Most prompts decoded in one forward pass (bounds memory).

        Raises:
            SamCheckpointError: If the processor's size differs from the model's.
        """
        image_size = sub_config(model.config.vision_config).image_size
        if processor.image_processor.size["longest_edge"] != image_size:
            raise SamCheckpointError(
                f"the processor resizes to {processor.image_processor.size['longest_edge']} px "
                f"but the model takes {image_size} px images"
            )
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model.eval()
        self.processor = processor
        self.multimask = multimask
        self.quad_margin = quad_margin
        self.coarse_mask_prompt = coarse_mask_prompt
        self.max_batch = max_batch
        self._cached: _ImageEmbedding | None = None
        # The cached embedding is shared state: one refinement at a time (API worker threads).
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | os.PathLike[str], device: str | torch.device = "cpu", **options: Any
    ) -> Refiner:
        """Loads SAM from a transformers directory, a Hub id or a segment-anything checkpoint.

        Args:
            path_or_id: What :func:`~geochat.sam_checkpoints.load_sam` loads.
            device: Where to run the model.
            **options: Keyword options of :class:`Refiner` (``multimask``, ``quad_margin``,
                ``coarse_mask_prompt``, ``max_batch``).

        Raises:
            FileNotFoundError: For a local path that does not exist.
            SamCheckpointError: For a checkpoint that cannot be read or is not SAM.
        """
        model, processor = load_sam(path_or_id)
        # transformers' wrapper of `to` types its argument as the model itself.
        return cls(model.to(device), processor, **options)  # type: ignore[arg-type]

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Writes the model and processor in transformers' format, atomically.

        A segment-anything ``.pth`` converted once this way then loads without conversion.

        Args:
            directory: Where to write; must not exist yet.

        Returns:
            The directory written.

        Raises:
            FileExistsError: If ``directory`` exists.
        """
        target = Path(directory)
        with atomic_folder(target) as staging:
            self.model.save_pretrained(staging)
            self.processor.save_pretrained(staging)
        return target

    @torch.inference_mode()
    def refine(
        self, image: Image.Image | np.ndarray, objects: Sequence[ObjectGeometry | Any]
    ) -> list[RefinedMask | None]:
        """Returns SAM's mask for each object, in the objects' order.

        The image is encoded once (and not again when the next call passes the same image);
        every prompt of one kind is decoded in one batched forward pass. Calls from several
        threads run one at a time.

        Args:
            image: A PIL image or an ``[H, W, 3]`` uint8 RGB array.
            objects: Parsed answer objects (kind ``hbb``, ``quad``, ``mask`` or ``none``; see
                :class:`ObjectGeometry`) or plain pixel boxes ``[x0, y0, x1, y1]``.

        Returns:
            One :class:`RefinedMask` per object at the image's size, None for kind ``none``.

        Raises:
            ValueError: For an image that is not RGB uint8 or an object of unknown kind.
            geometry.GeometryError: For an invalid box, quad or mask.
        """
        pixels = _as_rgb(image)
        height, width = pixels.shape[:2]
        kinds = [_kind_of(item) for item in objects]
        prompts = [
            prompt
            for owner, (item, kind) in enumerate(zip(objects, kinds, strict=True))
            for prompt in _prompts_for(owner, item, kind, height, width)
        ]
        with self._lock:
            unions, scores = self._masks_by_owner(pixels, prompts)
        results: list[RefinedMask | None] = []
        for owner, (item, kind) in enumerate(zip(objects, kinds, strict=True)):
            if kind == "none":
                results.append(None)
                continue
            mask = unions.get(owner, np.zeros((height, width), dtype=bool))
            if kind == "quad" and self.quad_margin is not None:
                mask &= _grown_quad_region(item.quad, self.quad_margin, height, width)
            score = float(np.mean(scores[owner])) if owner in scores else 0.0
            results.append(RefinedMask(geometry.mask_to_rle(mask), score))
        return results

    def _masks_by_owner(
        self, pixels: np.ndarray, prompts: list[_Prompt]
    ) -> tuple[dict[int, np.ndarray], dict[int, list[float]]]:
        """Runs SAM on every prompt; returns, per object, the union of its masks and its scores."""
        unions: dict[int, np.ndarray] = {}
        scores: dict[int, list[float]] = defaultdict(list)
        if not prompts:
            return unions, scores
        embedding = self._embed(pixels)
        # Masks are merged as they come: a coarse mask may have hundreds of parts.
        for prompt, mask, score in self._decode_all(embedding, prompts):
            if prompt.owner in unions:
                unions[prompt.owner] |= mask
            else:
                unions[prompt.owner] = mask
            scores[prompt.owner].append(score)
        return unions, scores

    def _embed(self, pixels: np.ndarray) -> _ImageEmbedding:
        """Runs the vision encoder, or returns the embedding of the previous call's image."""
        key = f"{pixels.shape}:{hashlib.blake2b(pixels.tobytes(), digest_size=16).hexdigest()}"
        if self._cached is not None and self._cached.key == key:
            return self._cached
        inputs = self.processor(images=pixels, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.model.device, self.model.dtype)
        self._cached = _ImageEmbedding(
            key=key,
            features=self.model.get_image_embeddings(pixel_values),  # [1, C, h, w]
            original_size=_pair(inputs["original_sizes"][0]),
            reshaped_size=_pair(inputs["reshaped_input_sizes"][0]),
        )
        return self._cached

    def _decode_all(
        self, embedding: _ImageEmbedding, prompts: list[_Prompt]
    ) -> Iterable[tuple[_Prompt, np.ndarray, float]]:
        """Yields each prompt with its full-resolution boolean mask and predicted IoU."""
        groups: dict[tuple[bool, bool], list[_Prompt]] = defaultdict(list)
        for prompt in prompts:
            # SAM's prompt tensors are all-or-none per forward pass: group by what is given.
            with_mask = self.coarse_mask_prompt and prompt.parts is not None
            groups[(prompt.point is not None, with_mask)].append(prompt)
        for (with_point, with_mask), group in groups.items():
            for start in range(0, len(group), self.max_batch):
                batch = group[start : start + self.max_batch]
                logits, scores = self._decode(embedding, batch, with_point, with_mask)
                for prompt, mask_logits, score in zip(batch, logits, scores, strict=True):
                    yield prompt, self._upscale(embedding, mask_logits), float(score)

    def _decode(
        self, embedding: _ImageEmbedding, prompts: list[_Prompt], with_point: bool, with_mask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decodes prompts of one kind in one pass; returns best low-res logits and IoUs.

        Every prompt is one batch entry (over the same image embedding), since SAM's dense mask
        prompt is given per batch entry.

        Returns:
            Logits ``[N, h, w]`` in SAM's low-resolution frame and predicted IoUs ``[N]``.
        """
        count = len(prompts)
        device = self.model.device
        boxes = np.stack([embedding.to_model_frame(prompt.box) for prompt in prompts])
        inputs: dict[str, torch.Tensor] = {
            "image_embeddings": embedding.features.expand(count, -1, -1, -1),  # [N, C, h, w]
            "input_boxes": torch.tensor(boxes[:, None], dtype=torch.float32, device=device),
        }
        if with_point:
            points = np.stack(
                [embedding.to_model_frame(_given(prompt.point)) for prompt in prompts]
            )
            inputs["input_points"] = torch.tensor(
                points[:, None, None], dtype=torch.float32, device=device
            )  # [N, 1, 1, 2]
            inputs["input_labels"] = torch.ones(count, 1, 1, dtype=torch.long, device=device)
        if with_mask:
            inputs["input_masks"] = torch.cat(
                [
                    self._mask_prompt(embedding, _given(prompt.parts) == prompt.part)
                    for prompt in prompts
                ]
            ).to(device, self.model.dtype)  # [N, 1, 4h, 4w]
        outputs = self.model(**inputs, multimask_output=self.multimask)
        logits = outputs.pred_masks[:, 0]  # [N, K, h, w], K = 3 (multimask) or 1
        scores = outputs.iou_scores[:, 0]  # [N, K]
        best = scores.argmax(dim=-1)  # [N]
        rows = torch.arange(count, device=best.device)
        return logits[rows, best], scores[rows, best]

    def _mask_prompt(self, embedding: _ImageEmbedding, mask: np.ndarray) -> torch.Tensor:
        """SAM's dense prompt for a binary mask: ``[1, 1, 4h, 4w]`` logits over the padded frame."""
        prompt_config = self.model.config.prompt_encoder_config
        side = 4 * prompt_config.image_embedding_size  # 256 for SAM
        scale = side / prompt_config.image_size
        size = [max(1, round(length * scale)) for length in embedding.reshaped_size]
        coverage = interpolate(
            torch.from_numpy(mask)[None, None].float(), size=size, mode="bilinear", antialias=True
        )  # [1, 1, h', w'], fraction of each cell inside the mask
        padded = pad(coverage, (0, side - size[1], 0, side - size[0]))
        return (2 * padded - 1) * MASK_PROMPT_LOGIT

    def _upscale(self, embedding: _ImageEmbedding, logits: torch.Tensor) -> np.ndarray:
        """Low-res logits ``[h, w]`` to a boolean mask ``[H, W]`` of the original image."""
        image_size = self.model.config.vision_config.image_size
        (mask,) = self.processor.post_process_masks(
            [logits[None, None].float().cpu()],  # [1, 1, h, w]
            [embedding.original_size],
            [embedding.reshaped_size],
            mask_threshold=MASK_THRESHOLD,
            pad_size={"height": image_size, "width": image_size},
        )
        return mask[0, 0].numpy()


def _as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """Returns an ``[H, W, 3]`` uint8 array; raises ValueError for anything else."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise ValueError(
            f"image must be a PIL image or an [H, W, 3] uint8 array, "
            f"got {array.dtype} of shape {array.shape}"
        )
    return array


def _kind_of(item: Any) -> str:
    """An object's kind; plain boxes (anything without ``kind``) count as ``hbb``."""
    kind = getattr(item, "kind", "hbb")
    if kind not in ("hbb", "quad", "mask", "none"):
        raise ValueError(f"object kind must be hbb, quad, mask or none, got {kind!r}")
    return kind


def _prompts_for(owner: int, item: Any, kind: str, height: int, width: int) -> list[_Prompt]:
    """The prompts for one object (none for kind ``none`` or a box wholly outside the image)."""
    if kind == "none":
        return []
    if kind == "mask":
        return _coarse_mask_prompts(owner, _coarse_mask(item.mask, height, width))
    if kind == "quad":
        quad = geometry.as_quad(item.quad)
        box = geometry.quad_to_hbb(quad)
        # Centre in pixel-edge coordinates, moved to SAM's pixel-index convention.
        point = np.clip(quad.mean(axis=0) - 0.5, 0, [width - 1, height - 1])
    else:
        box = geometry.as_hbb(getattr(item, "hbb", item))
        point = None
    box = geometry.clip_hbb(box, width, height)
    if box[2] <= box[0] or box[3] <= box[1]:
        return []
    return [_Prompt(owner, box, point)]


def _coarse_mask(rle: RLE, height: int, width: int) -> np.ndarray:
    """Decodes a coarse mask and stretches it over the image if it has another size."""
    mask = geometry.rle_to_mask(rle)
    if mask.shape == (height, width):
        return mask
    resized = Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=bool)


def _coarse_mask_prompts(owner: int, mask: np.ndarray) -> list[_Prompt]:
    """One prompt per 8-connected part: its box and its most interior pixel."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    prompts = []
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[rows, cols] == index
        # Distance to the part's edge, padded so the crop's border counts as outside.
        depth = ndimage.distance_transform_edt(np.pad(part, 1))[1:-1, 1:-1]
        row, col = np.unravel_index(np.argmax(depth), depth.shape)
        prompts.append(
            _Prompt(
                owner=owner,
                box=np.array([cols.start, rows.start, cols.stop, rows.stop], dtype=np.float64),
                point=np.array([cols.start + col, rows.start + row], dtype=np.float64),
                parts=labels,
                part=index,
            )
        )
    return prompts


def _grown_quad_region(quad: Any, margin: float, height: int, width: int) -> np.ndarray:
    """Boolean ``[H, W]`` region of a quad grown by ``margin`` of its shorter side (>= 1 px)."""
    _, _, side_w, side_h, _ = geometry.quad_to_obb(quad)
    polygon = geometry.quad_to_polygon(quad).buffer(max(1.0, margin * min(side_w, side_h)))
    return geometry.rasterize(polygon, height, width)


def _pair(values: Iterable[Any]) -> tuple[int, int]:
    """A ``(height, width)`` pair of ints from two numbers (e.g. a row of a size tensor)."""
    height, width = (int(v) for v in values)
    return height, width


def _given(value: np.ndarray | None) -> np.ndarray:
    """A prompt's point or parts, which the prompt's group (see ``_decode_all``) says it has."""
    if value is None:
        raise ValueError("a prompt lacks the point or mask that its group of prompts has")
    return value
