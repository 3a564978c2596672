"""Tests of geochat.refine and geochat.sam_checkpoints with tiny random SAM models.

The models: hidden 32, 2 layers, 256 px images.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import hypothesis
import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from sam_fixtures import TINY_CONFIG, save, tiny_processor, tiny_sam
from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor

from geochat import geometry
from geochat.geometry import GeometryError
from geochat.refine import RefinedMask, Refiner
from geochat.sam_checkpoints import (
    SamCheckpointError,
    convert_segment_anything_state_dict,
    load_segment_anything_checkpoint,
    sam_config_from_state_dict,
)

HEIGHT, WIDTH = 96, 160  # not square: SAM pads the resized image to a square

# The three published segment-anything sizes, as in transformers' convert_sam_to_hf.py.
SEGMENT_ANYTHING_VISION = {
    "vit_b": {},
    "vit_l": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "global_attn_indexes": [5, 11, 17, 23],
    },
    "vit_h": {
        "hidden_size": 1280,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "global_attn_indexes": [7, 15, 23, 31],
    },
}

# transformers name -> segment-anything name, written independently of geochat.sam_checkpoints.
TO_SEGMENT_ANYTHING = [
    (r"^vision_encoder\.", "image_encoder."),
    (r"^image_encoder\.layers\.", "image_encoder.blocks."),
    (r"\.patch_embed\.projection\.", ".patch_embed.proj."),
    (r"\.neck\.conv1\.", ".neck.0."),
    (r"\.neck\.layer_norm1\.", ".neck.1."),
    (r"\.neck\.conv2\.", ".neck.2."),
    (r"\.neck\.layer_norm2\.", ".neck.3."),
    (r"\.mask_embed\.conv1\.", ".mask_downscaling.0."),
    (r"\.mask_embed\.layer_norm1\.", ".mask_downscaling.1."),
    (r"\.mask_embed\.conv2\.", ".mask_downscaling.3."),
    (r"\.mask_embed\.layer_norm2\.", ".mask_downscaling.4."),
    (r"\.mask_embed\.conv3\.", ".mask_downscaling.6."),
    (r"\.upscale_conv1\.", ".output_upscaling.0."),
    (r"\.upscale_layer_norm\.", ".output_upscaling.1."),
    (r"\.upscale_conv2\.", ".output_upscaling.3."),
    (r"\.layer_norm(\d)\.", r".norm\1."),
    (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"\.shared_embedding\.positional_embedding$", ".pe_layer.positional_encoding_gaussian_matrix"),
    (r"\.point_embed\.", ".point_embeddings."),
    # Three-layer MLP heads (every SAM's): proj_in, layers.0, proj_out -> layers.0, 1, 2.
    (r"(iou_prediction_head|output_hypernetworks_mlps\.\d+)\.layers\.0\.", r"\1.layers.1."),
    (r"(iou_prediction_head|output_hypernetworks_mlps\.\d+)\.proj_in\.", r"\1.layers.0."),
    (r"(iou_prediction_head|output_hypernetworks_mlps\.\d+)\.proj_out\.", r"\1.layers.2."),
]


def to_segment_anything(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for name, tensor in state_dict.items():
        if name == "shared_image_embedding.positional_embedding":
            continue  # segment-anything holds it once, in the prompt encoder
        for pattern, replacement in TO_SEGMENT_ANYTHING:
            name = re.sub(pattern, replacement, name)
        renamed[name] = tensor
    return renamed


@dataclass(frozen=True)
class Answer:
    """A stand-in for a parsed grammar object."""

    kind: str
    hbb: Any = None
    quad: Any = None
    mask: Any = None


def saturated_sam() -> SamModel:
    """A tiny SAM whose every mask logit is positive: it answers 'the whole image'."""
    model = tiny_sam()
    decoder = model.mask_decoder
    with torch.no_grad():
        # Constant upscaled features (GELU(1) > 0) times positive hypernetwork outputs.
        decoder.upscale_conv2.weight.zero_()
        decoder.upscale_conv2.bias.fill_(1.0)
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.zero_()
            mlp.proj_out.bias.fill_(1.0)
    return model


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory) -> Path:
    return save(tiny_sam(), tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture(scope="module")
def sam_pth(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("segment-anything") / "sam_tiny.pth"
    torch.save(to_segment_anything(tiny_sam().state_dict()), path)
    return path


@pytest.fixture(scope="module")
def refiner(sam_dir) -> Refiner:
    return Refiner.from_pretrained(sam_dir)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def count_encoder_calls(refiner: Refiner) -> list[int]:
    calls = []
    refiner.model.vision_encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls


def rectangle_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def settings(config: SamConfig) -> dict[str, Any]:
    return {key: value for key, value in config.to_dict().items() if key != "transformers_version"}


def masks(results: list[RefinedMask | None]) -> list[np.ndarray]:
    return [geometry.rle_to_mask(result.mask) for result in results]


# --- refinement -----------------------------------------------------------------------------


def test_each_box_gets_a_mask_at_the_original_image_size(refiner, image):
    results = refiner.refine(image, [[10, 20, 60, 80], np.array([100.0, 5.0, 150.0, 40.0])])

    assert len(results) == 2
    for result in results:
        assert isinstance(result, RefinedMask)
        assert result.mask["size"] == [HEIGHT, WIDTH]
        assert isinstance(result.mask["counts"], str)
        assert np.isfinite(result.score)
    first, second = masks(results)
    assert not np.array_equal(first, second)  # each box has its own answer


def best_masks_of_transformers_pipeline(image: np.ndarray, **prompts: Any) -> list[np.ndarray]:
    """SAM run the way transformers documents it, keeping the mask of best predicted IoU."""
    model, processor = tiny_sam(), tiny_processor()
    inputs = processor(images=image, return_tensors="pt", **prompts)
    with torch.no_grad():
        outputs = model(**inputs)
    (full,) = processor.post_process_masks(
        outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )  # [prompts, 3, H, W]
    best = outputs.iou_scores[0].argmax(dim=-1)
    return [full[i, index].numpy() for i, index in enumerate(best)]


def test_boxes_answer_as_in_transformers_sam_pipeline(refiner, image):
    boxes = [[10, 20, 60, 80], [100, 5, 150, 40]]

    expected = best_masks_of_transformers_pipeline(image, input_boxes=[boxes])

    for got, want in zip(masks(refiner.refine(image, boxes)), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_quad_prompts_its_box_and_centre_point(sam_dir, image):
    quad = np.array([[40, 10], [90, 40], [70, 70], [20, 40]])
    centre = quad.mean(axis=0) - 0.5  # SAM's points are pixel indices

    expected = best_masks_of_transformers_pipeline(
        image,
        input_boxes=[[geometry.quad_to_hbb(quad).tolist()]],
        input_points=[[[centre.tolist()]]],
    )

    uncut = Refiner.from_pretrained(sam_dir, quad_margin=None)
    np.testing.assert_array_equal(
        masks(uncut.refine(image, [Answer("quad", quad=quad)]))[0], expected[0]
    )


def test_none_objects_give_none_in_their_place(refiner, image):
    objects = [
        Answer("hbb", hbb=[10, 20, 60, 80]),
        Answer("none"),
        Answer("quad", quad=[[40, 10], [90, 40], [70, 70], [20, 40]]),
    ]

    results = refiner.refine(image, objects)

    assert [result is None for result in results] == [False, True, False]


def test_only_none_objects_skip_the_image_encoder(sam_dir, image):
    refiner = Refiner.from_pretrained(sam_dir)
    calls = count_encoder_calls(refiner)

    assert refiner.refine(image, [Answer("none"), Answer("none")]) == [None, None]
    assert refiner.refine(image, []) == []
    assert calls == []


def test_a_batch_gives_the_masks_of_one_box_at_a_time(refiner, image):
    boxes = [[10, 20, 60, 80], [100, 5, 150, 40], [0, 0, 160, 96]]

    together = refiner.refine(image, boxes)
    alone = [refiner.refine(image, [box])[0] for box in boxes]

    for joint, single in zip(together, alone, strict=True):
        np.testing.assert_array_equal(geometry.rle_to_mask(joint.mask), masks([single])[0])
        assert joint.score == pytest.approx(single.score, abs=1e-5)


def test_the_image_is_encoded_once_per_image(sam_dir, image):
    refiner = Refiner.from_pretrained(sam_dir)
    calls = count_encoder_calls(refiner)

    first = refiner.refine(image, [[10, 20, 60, 80]])
    again = refiner.refine(Image.fromarray(image), [[10, 20, 60, 80]])
    assert len(calls) == 1
    assert first == again

    refiner.refine(255 - image, [[10, 20, 60, 80]])
    assert len(calls) == 2


def test_a_saturated_model_fills_exactly_the_image(tmp_path, image):
    refiner = Refiner.from_pretrained(save(saturated_sam(), tmp_path / "sam"))

    (result,) = refiner.refine(image, [[10, 20, 60, 80]])

    assert geometry.mask_area(result.mask) == HEIGHT * WIDTH


def test_a_quad_mask_is_cut_to_the_quad_grown_by_the_margin(tmp_path, image):
    sam = save(saturated_sam(), tmp_path / "sam")
    quad = geometry.obb_to_quad(80, 48, 60, 20, 30)  # a diagonal ship: 60 x 20 px at 30 degrees
    answer = Answer("quad", hbb=geometry.quad_to_hbb(quad), quad=quad)

    (cut,) = Refiner.from_pretrained(sam, quad_margin=0.25).refine(image, [answer])
    (uncut,) = Refiner.from_pretrained(sam, quad_margin=None).refine(image, [answer])

    grown = geometry.quad_to_polygon(quad).buffer(0.25 * 20)
    np.testing.assert_array_equal(
        geometry.rle_to_mask(cut.mask), geometry.rasterize(grown, HEIGHT, WIDTH)
    )
    assert geometry.mask_area(uncut.mask) == HEIGHT * WIDTH


def test_each_part_of_a_coarse_mask_is_refined_on_its_own(refiner, image):
    left, right = rectangle_mask(10, 10, 40, 50), rectangle_mask(100, 40, 150, 90)

    (both,) = refiner.refine(image, [Answer("mask", mask=geometry.mask_to_rle(left | right))])
    parts = refiner.refine(
        image, [Answer("mask", mask=geometry.mask_to_rle(part)) for part in (left, right)]
    )

    left_mask, right_mask = masks(parts)
    np.testing.assert_array_equal(geometry.rle_to_mask(both.mask), left_mask | right_mask)
    assert both.score == pytest.approx(np.mean([part.score for part in parts]), abs=1e-5)


def test_a_grid_sized_coarse_mask_is_stretched_over_the_image(refiner, image):
    grid = np.zeros((16, 16), dtype=bool)  # a 16 x 16 text-mask: cells of 10 x 6 px here
    grid[2:6, 3:9] = True

    (from_grid,) = refiner.refine(image, [Answer("mask", mask=geometry.mask_to_rle(grid))])
    (full,) = refiner.refine(
        image, [Answer("mask", mask=geometry.mask_to_rle(rectangle_mask(30, 12, 90, 36)))]
    )

    assert from_grid == full


def test_the_coarse_mask_prompt_changes_samss_answer(sam_dir, refiner, image):
    answer = Answer("mask", mask=geometry.mask_to_rle(rectangle_mask(30, 12, 90, 60)))

    (without,) = refiner.refine(image, [answer])
    (with_prompt,) = Refiner.from_pretrained(sam_dir, coarse_mask_prompt=True).refine(
        image, [answer]
    )

    assert with_prompt.mask["size"] == [HEIGHT, WIDTH]
    assert with_prompt != without


def test_boxes_outside_the_image_and_empty_masks_give_empty_masks(refiner, image):
    empty = geometry.mask_to_rle(np.zeros((HEIGHT, WIDTH), dtype=bool))
    objects = [[200, 10, 260, 50], Answer("mask", mask=empty)]

    results = refiner.refine(image, objects)

    assert results == [RefinedMask(empty, 0.0), RefinedMask(empty, 0.0)]


@pytest.mark.parametrize(
    "bad_image",
    [
        np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32),
        np.zeros((HEIGHT, WIDTH), dtype=np.uint8),
        np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8),
        np.zeros((0, WIDTH, 3), dtype=np.uint8),
    ],
)
def test_an_image_that_is_not_rgb_uint8_is_refused(refiner, bad_image):
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        refiner.refine(bad_image, [[0, 0, 10, 10]])


def test_bad_objects_are_refused(refiner, image):
    with pytest.raises(ValueError, match="kind must be"):
        refiner.refine(image, [Answer("polygon")])
    with pytest.raises(GeometryError):
        refiner.refine(image, [[50, 10, 20, 40]])  # x1 < x0
    with pytest.raises(GeometryError):
        refiner.refine(image, [Answer("quad", quad=[1, 2, 3])])


# --- segment-anything checkpoints -----------------------------------------------------------


def test_a_segment_anything_pth_gives_the_same_answers(sam_dir, sam_pth, image):
    objects = [
        [10, 20, 60, 80],
        Answer("quad", quad=[[40, 10], [90, 40], [70, 70], [20, 40]]),
        Answer("mask", mask=geometry.mask_to_rle(rectangle_mask(30, 12, 90, 60))),
    ]
    from_pth = Refiner.from_pretrained(sam_pth)
    from_dir = Refiner.from_pretrained(sam_dir)

    assert from_pth.refine(image, objects) == from_dir.refine(image, objects)
    converted = from_pth.model.state_dict()
    for name, tensor in from_dir.model.state_dict().items():
        torch.testing.assert_close(converted[name], tensor, rtol=0, atol=0, msg=name)


def test_the_config_is_read_from_the_tensor_shapes(sam_pth):
    model = load_segment_anything_checkpoint(sam_pth)

    assert settings(model.config) == settings(SamConfig(**TINY_CONFIG))


@pytest.mark.parametrize("variant", sorted(SEGMENT_ANYTHING_VISION))
def test_vit_b_l_h_configs_are_read_from_the_tensor_shapes(variant):
    config = SamConfig(vision_config=SEGMENT_ANYTHING_VISION[variant])
    with torch.device("meta"):  # shapes only, no memory
        state_dict = SamModel(config).state_dict()

    read = sam_config_from_state_dict(
        convert_segment_anything_state_dict(to_segment_anything(state_dict))
    )

    assert settings(read) == settings(config)


def test_segment_anything_names_map_to_transformers_names():
    heads = [f"mask_decoder.output_hypernetworks_mlps.{i}" for i in range(4)]
    heads.append("mask_decoder.iou_prediction_head")
    mlp_layers = {
        f"{head}.layers.{i}.weight": f"{head}.{new}.weight"
        for head in heads
        for i, new in enumerate(["proj_in", "layers.0", "proj_out"])
    }
    expected = {
        "image_encoder.patch_embed.proj.weight": "vision_encoder.patch_embed.projection.weight",
        "image_encoder.pos_embed": "vision_encoder.pos_embed",
        "image_encoder.blocks.11.norm1.bias": "vision_encoder.layers.11.layer_norm1.bias",
        "image_encoder.blocks.3.attn.rel_pos_h": "vision_encoder.layers.3.attn.rel_pos_h",
        "image_encoder.blocks.0.mlp.lin2.weight": "vision_encoder.layers.0.mlp.lin2.weight",
        "image_encoder.neck.0.weight": "vision_encoder.neck.conv1.weight",
        "image_encoder.neck.3.bias": "vision_encoder.neck.layer_norm2.bias",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (
            "prompt_encoder.shared_embedding.positional_embedding"
        ),
        "prompt_encoder.point_embeddings.3.weight": "prompt_encoder.point_embed.3.weight",
        "prompt_encoder.not_a_point_embed.weight": "prompt_encoder.not_a_point_embed.weight",
        "prompt_encoder.mask_downscaling.4.bias": "prompt_encoder.mask_embed.layer_norm2.bias",
        "prompt_encoder.mask_downscaling.6.weight": "prompt_encoder.mask_embed.conv3.weight",
        "mask_decoder.transformer.layers.1.norm4.weight": (
            "mask_decoder.transformer.layers.1.layer_norm4.weight"
        ),
        "mask_decoder.transformer.layers.0.cross_attn_image_to_token.q_proj.bias": (
            "mask_decoder.transformer.layers.0.cross_attn_image_to_token.q_proj.bias"
        ),
        "mask_decoder.transformer.norm_final_attn.bias": (
            "mask_decoder.transformer.layer_norm_final_attn.bias"
        ),
        "mask_decoder.output_upscaling.1.weight": "mask_decoder.upscale_layer_norm.weight",
        "mask_decoder.output_upscaling.3.bias": "mask_decoder.upscale_conv2.bias",
        **mlp_layers,
    }
    state_dict = {name: torch.zeros(1) for name in [*expected, "pixel_mean", "pixel_std"]}

    converted = convert_segment_anything_state_dict(state_dict)

    assert set(converted) == {*expected.values(), "shared_image_embedding.positional_embedding"}


def test_a_converted_checkpoint_saves_and_reloads(sam_pth, tmp_path, image):
    refiner = Refiner.from_pretrained(sam_pth)

    saved = refiner.save_pretrained(tmp_path / "converted")

    reloaded = Refiner.from_pretrained(saved)
    assert reloaded.refine(image, [[10, 20, 60, 80]]) == refiner.refine(image, [[10, 20, 60, 80]])
    with pytest.raises(FileExistsError):
        refiner.save_pretrained(saved)


def test_a_saved_checkpoint_gets_the_permissions_mkdir_would_give(sam_dir, tmp_path):
    previous = os.umask(0o022)
    try:
        saved = Refiner.from_pretrained(sam_dir).save_pretrained(tmp_path / "saved")
    finally:
        os.umask(previous)

    assert saved.stat().st_mode & 0o777 == 0o755
    assert (saved / "config.json").stat().st_mode & 0o777 == 0o644
    assert [path.name for path in tmp_path.iterdir()] == ["saved"]


def test_a_checkpoint_wrapped_as_model_or_in_safetensors_loads(sam_dir, sam_pth, tmp_path):
    state_dict = torch.load(sam_pth, weights_only=True)
    wrapped, single_file = tmp_path / "wrapped.pth", tmp_path / "sam.safetensors"
    torch.save({"model": state_dict}, wrapped)
    safetensors.torch.save_file(state_dict, single_file)
    expected = SamModel.from_pretrained(sam_dir).state_dict()

    for path in (wrapped, single_file):
        loaded = load_segment_anything_checkpoint(path).state_dict()
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[name], tensor) for name, tensor in expected.items())


# --- bad checkpoints ------------------------------------------------------------------------


def test_missing_paths_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Refiner.from_pretrained(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError):
        Refiner.from_pretrained(tmp_path / "missing-directory")


# Seeds whose bytes once made the unpickler raise IndexError, KeyError or UnicodeDecodeError.
@pytest.mark.parametrize("seed", [0, 2493, 2502, 2625])
def test_a_corrupt_pth_is_refused(tmp_path, seed):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(np.random.default_rng(seed).bytes(256))

    with pytest.raises(SamCheckpointError, match="cannot read"):
        Refiner.from_pretrained(path)


# Starts of real formats, so that the bytes get past the first check of each reader.
FORMAT_HEADS = [b"", b"\x80\x02", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.", b"PK\x03\x04"]


@hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
@given(
    head=st.sampled_from(FORMAT_HEADS),
    tail=st.binary(max_size=512),
    suffix=st.sampled_from([".pth", ".safetensors"]),
)
def test_every_unreadable_checkpoint_file_is_refused(tmp_path_factory, head, tail, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"corrupt{suffix}"
    path.write_bytes(head + tail)

    with pytest.raises(SamCheckpointError):
        load_segment_anything_checkpoint(path)


class Payload:
    """Unpickling this would create a directory: proof that it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_pickled_objects_are_never_run(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "hostile.pth"
    torch.save({"image_encoder.pos_embed": Payload(marker)}, path)

    with pytest.raises(SamCheckpointError, match="only plain tensors"):
        Refiner.from_pretrained(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"weight": torch.zeros(2)}, "no tensor 'vision_encoder.patch_embed.projection.weight'"),
        ({"model": {"step": 3}}, "state dict of tensors"),
        ([torch.zeros(2)], "state dict of tensors"),
    ],
)
def test_a_pth_that_is_not_a_sam_state_dict_is_refused(tmp_path, content, message):
    path = tmp_path / "other.pth"
    torch.save(content, path)

    with pytest.raises(SamCheckpointError, match=re.escape(message)):
        Refiner.from_pretrained(path)


def test_a_sam_state_dict_with_a_missing_or_extra_tensor_is_refused(sam_pth, tmp_path):
    state_dict = torch.load(sam_pth, weights_only=True)
    missing = dict(state_dict)
    del missing["prompt_encoder.not_a_point_embed.weight"]
    extra = state_dict | {"mask_decoder.hf_token.weight": torch.zeros(1, 32)}  # SAM-HQ's
    for name, content in (("missing", missing), ("extra", extra)):
        torch.save(content, tmp_path / f"{name}.pth")

        with pytest.raises(SamCheckpointError, match="does not fit SAM"):
            Refiner.from_pretrained(tmp_path / f"{name}.pth")


@pytest.mark.parametrize(
    "name",
    [
        "image_encoder.patch_embed.proj.weight",
        "image_encoder.pos_embed",
        "image_encoder.blocks.0.attn.rel_pos_h",
        "image_encoder.neck.0.weight",
        "prompt_encoder.no_mask_embed.weight",
        "mask_decoder.iou_token.weight",
        "mask_decoder.mask_tokens.weight",
    ],
)
@pytest.mark.parametrize("shape", [(), (5,), (0, 32), (3, 3, 3, 3, 3)])
def test_a_sam_tensor_of_another_rank_is_refused(sam_pth, tmp_path, name, shape):
    state_dict = torch.load(sam_pth, weights_only=True)
    assert name in state_dict
    path = tmp_path / "reshaped.pth"
    torch.save(state_dict | {name: torch.zeros(shape)}, path)

    with pytest.raises(SamCheckpointError, match=r"not a SAM checkpoint|does not fit SAM"):
        load_segment_anything_checkpoint(path)


def test_a_directory_without_a_sam_model_is_refused(tmp_path, sam_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_bytes((sam_dir / "config.json").read_bytes())
    (corrupt / "model.safetensors").write_bytes(b"not safetensors" * 10)

    with pytest.raises(SamCheckpointError, match="cannot read a transformers config"):
        Refiner.from_pretrained(empty)
    with pytest.raises(SamCheckpointError, match="'bert' model, not SAM"):
        Refiner.from_pretrained(other)
    with pytest.raises(SamCheckpointError, match="cannot load SAM weights"):
        Refiner.from_pretrained(corrupt)


def test_an_unreachable_hub_id_is_refused(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    with pytest.raises(SamCheckpointError, match="Hub model that can be reached"):
        Refiner.from_pretrained("geochat-tests/no-such-sam")


def test_a_processor_for_another_image_size_is_refused(sam_dir):
    model = SamModel.from_pretrained(sam_dir)
    processor = SamProcessor(image_processor=SamImageProcessorPil())  # 1024 px

    with pytest.raises(SamCheckpointError, match="1024 px"):
        Refiner(model, processor)
