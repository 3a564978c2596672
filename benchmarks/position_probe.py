"""Where does a model's sense of place come from? Position in its visual tokens, and in its boxes.

Two measurements on the images of a records build, for one or more models:

1. **Linear probe**: a ridge regression from each visual token (the vision encoder's output, and
   the connector's output that the LLM reads) to the token's row and column on its grid, fitted
   on half the images and scored (R^2) on the other half. About 0 means the tokens carry no
   position a linear readout finds; the LLM then has only the tokens' order in its sequence.
2. **Box centres**: for the records' single-box refer answers on small objects (trees,
   buildings), the correlation between the centre of the model's first box and the truth's,
   along x and along y, the median distance (grammar units, 0..1000), and how far the
   predicted centre moves when the image is rolled by a quarter of its side (250 units) along
   x, then along y: the causal test of whether the model reads where the object is.

    python benchmarks/position_probe.py --data data/nano-test --models geochat/assets/geochat-nano
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geochat.modeling import load_pretrained
from geochat.predict import predict_records
from geochat.records import image_path
from geochat.training.data import RecordDataset

SMALL_OBJECTS = ("tree", "building")
_BOX = re.compile(r"<box>\[\[(\d+),(\d+),(\d+),(\d+)\]")


def visual_tokens(model, processor, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The vision encoder's and the connector's output for the first view of each image.

    Returns:
        ``[images, G*G, D_vision]`` and ``[images, G*G, D_text]``.
    """
    vision, connector = [], []
    for start in range(0, len(paths), 32):
        images = [[Image.open(path).convert("RGB")] for path in paths[start : start + 32]]
        pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"][:, 0]
        with torch.no_grad():
            encoded = model.model.vision_model(pixel_values=pixels).last_hidden_state
            connector.append(model.model.connector(encoded).float().numpy())
        vision.append(encoded.float().numpy())
    return np.concatenate(vision), np.concatenate(connector)


def probe_r2(tokens: np.ndarray) -> tuple[float, float]:
    """Held-out R^2 of a ridge readout of (row, column) from ``tokens [images, G*G, D]``."""
    images, count, width = tokens.shape
    side = math.isqrt(count)
    features = tokens.reshape(-1, width).astype(np.float64)
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    features = np.c_[features, np.ones(len(features))]
    place = np.tile(np.arange(count), images)
    half = (images // 2) * count
    scores = []
    for target in (place // side, place % side):
        train_x, train_y = features[:half], target[:half]
        weights = np.linalg.solve(
            train_x.T @ train_x + np.eye(train_x.shape[1]), train_x.T @ train_y
        )
        error = features[half:] @ weights - target[half:]
        scores.append(1 - error.var() / target[half:].var())
    return scores[0], scores[1]


def first_box(answer: str) -> np.ndarray | None:
    match = _BOX.search(answer)
    return None if match is None else np.array([int(v) for v in match.groups()], dtype=float)


def small_object_questions(dataset: RecordDataset) -> list[tuple[dict, Path]]:
    """Refer records whose answer is one box around a tree or a building."""
    return [
        (record, shard)
        for record, shard in dataset.items
        if record["task"] == "refer"
        and record["objects"]
        and record["objects"][0]["category"] in SMALL_OBJECTS
        and "],[" not in record["conversations"][1]["value"]
        and first_box(record["conversations"][1]["value"]) is not None
    ]


def box_centres(model, processor, chosen: list[tuple[dict, Path]]) -> np.ndarray:
    """``[n, 2]`` the (x, y) centre of the model's first box for each record (NaN when none)."""
    records, shards = [r for r, _ in chosen], [p for _, p in chosen]
    answers = predict_records(model, processor, records, shards, batch_size=16, max_new_tokens=32)
    centres = np.full((len(records), 2), np.nan)
    for index, record in enumerate(records):
        box = first_box(str(answers.get(record["id"], "")))
        if box is not None:
            centres[index] = (box[:2] + box[2:]) / 2
    return centres


def rolled(chosen: list[tuple[dict, Path]], folder: Path, dx: int, dy: int) -> list[tuple]:
    """The records with their images rolled by (dx, dy) pixels, written under ``folder``."""
    moved = []
    for record, shard in chosen:
        pixels = np.asarray(Image.open(image_path(record, shard)).convert("RGB"))
        name = f"{record['id'].replace(':', '_').replace('/', '_')}-{dx}-{dy}.png"
        Image.fromarray(np.roll(pixels, (dy, dx), axis=(0, 1))).save(folder / name)
        moved.append(({**record, "image": name}, folder / "rolled.jsonl"))
    return moved


def centre_agreement(model, processor, dataset: RecordDataset) -> dict[str, float]:
    """How the model's box centres follow the truth, and follow the object when it moves.

    The shift response rolls each image by a quarter of its side along x, then along y, and
    takes the median move of the predicted centre (grammar units; 250 when the model follows
    the object, 0 when it ignores where it is), over objects that stay whole.
    """
    chosen = small_object_questions(dataset)
    truth = np.array([first_box(r["conversations"][1]["value"]) for r, _ in chosen])
    truth_centres = (truth[:, :2] + truth[:, 2:]) / 2  # [n, (x, y)]
    centres = box_centres(model, processor, chosen)
    found = ~np.isnan(centres[:, 0])
    scores = {"n": int(found.sum())}
    for axis, name in enumerate("xy"):
        agree = np.corrcoef(truth_centres[found, axis], centres[found, axis])[0, 1]
        scores[f"corr_{name}"] = float(agree)
        miss = np.abs(truth_centres[found, axis] - centres[found, axis])
        scores[f"median_miss_{name}"] = float(np.median(miss))
    with tempfile.TemporaryDirectory() as folder:
        for axis, name in enumerate("xy"):
            stays = truth[:, axis + 2] <= 750  # the object does not wrap around the edge
            side = int(chosen[0][0]["width"] if axis == 0 else chosen[0][0]["height"])
            shift = (side // 4, 0) if axis == 0 else (0, side // 4)
            moved = box_centres(model, processor, rolled(chosen, Path(folder), *shift))
            change = (moved - centres)[stays & found, axis]
            scores[f"shift_{name}"] = float(np.nanmedian(change))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a records build folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--images", type=int, default=300, help="images for the linear probe")
    parser.add_argument("--records", type=int, default=2000, help="records searched for refer")
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = RecordDataset(args.data, args.split, limit=args.records)
    paths = sorted({image_path(record, shard) for record, shard in dataset.items})[: args.images]
    print(f"{len(paths)} images for the probe, from {args.data} ({args.split})")
    print(
        "| model | probe R^2 vision row / col | probe R^2 connector row / col "
        "| refer n | centre corr x / y | median centre miss x / y | centre move x / y for 250 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        model, processor = load_pretrained(name)
        model.eval()
        vision, connector = visual_tokens(model, processor, paths)
        vision_r2, connector_r2 = probe_r2(vision), probe_r2(connector)
        centres = centre_agreement(model, processor, dataset)
        print(
            f"| {name} | {vision_r2[0]:.2f} / {vision_r2[1]:.2f} "
            f"| {connector_r2[0]:.2f} / {connector_r2[1]:.2f} | {centres['n']} "
            f"| {centres['corr_x']:.2f} / {centres['corr_y']:.2f} "
            f"| {centres['median_miss_x']:.0f} / {centres['median_miss_y']:.0f} "
            f"| {centres['shift_x']:.0f} / {centres['shift_y']:.0f} |"
        )


if __name__ == "__main__":
    main()
