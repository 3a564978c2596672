import json

from PIL import Image

from geochat.data_builders.curriculum import is_pointing, main
from geochat.records import image_path, write_jsonl


def record(index: int, task: str, question: str, answer: str, hbb=(10, 10, 30, 30), **extra):
    return {
        "id": f"r{index}",
        "image": "images/tile.png",
        "width": 128,
        "height": 128,
        "task": task,
        "split": "train",
        "conversations": [
            {"from": "human", "value": f"<image>\n{question}"},
            {"from": "gpt", "value": answer},
        ],
        "objects": [{"category": "tree", "hbb": list(hbb)}],
        **extra,
    }


BOX = "<box>[[78,78,234,234]]</box>"
RECORDS = [
    record(0, "refer", "Where is the tree?", BOX),
    record(1, "refer", "Find the tree and answer with a bounding box.", BOX),
    record(2, "refer", "Give the bounding box of the tree on the left.", BOX),  # relational
    record(3, "refer", "Where is the tree?", BOX, hbb=(0, 0, 120, 100)),  # not small
    record(4, "refer", "Where are all trees?", "<box>[[0,0,9,9],[20,20,30,30]]</box>"),
    record(5, "vqa", "Is there a tree?", "yes"),
    record(6, "segment", "Segment the tree.", "<seg>...</seg>"),
]


def test_pointing_questions_name_one_small_object_by_its_category():
    assert [is_pointing(r) for r in RECORDS] == [True, True, False, False, False, False, False]


def test_the_selection_keeps_pointing_questions_and_a_share_of_the_rest(tmp_path, capsys):
    build = tmp_path / "build"
    (build / "images").mkdir(parents=True)
    Image.new("RGB", (128, 128)).save(build / "images" / "tile.png")
    write_jsonl(build / "train-00000.jsonl", RECORDS)
    out = tmp_path / "deep" / "out"
    main(
        [
            "--builds",
            str(build),
            "--out",
            str(out),
            "--refer-fraction",
            "1",
            "--other-fraction",
            "0",
        ]
    )
    shard = out / "train-00000.jsonl"
    chosen = [json.loads(line) for line in shard.read_text().splitlines()]
    # Every pointing and refer record; no other task at fraction 0; segment is never used.
    assert sorted(r["id"] for r in chosen) == ["r0", "r1", "r2", "r3", "r4"]
    assert all(image_path(r, shard).resolve() == build / "images" / "tile.png" for r in chosen)
    assert "wrote 5 records (refer 3, pointing 2)" in capsys.readouterr().out
