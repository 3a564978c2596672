"""`geochat.grammar.readable`: the text of an answer without an image, or still streaming."""

import pytest

from geochat.grammar import readable


def test_an_answer_without_an_image_reads_without_its_tags():
    read = readable("There are <ref>two ships</ref><box>[[100,200,300,400]]</box> here.")
    assert read.text == "There are two ships here."
    assert read.problems == []


def test_nothing_found_is_an_object_without_geometry():
    read = readable("<ref>the pool</ref><none>")
    assert read.text == "the pool"
    assert [(obj.kind, obj.phrase) for obj in read.objects] == [("none", "the pool")]


@pytest.mark.parametrize(
    ("streamed", "shown"),
    [
        ("There are <", "There are"),
        ("There are <re", "There are"),
        ("There are <ref>two sh", "There are two sh"),
        ("There are <ref>two ships</", "There are two ships"),
        ("There are <ref>two ships</ref><box>[[100,2", "There are two ships"),
        ("Sorry: <non", "Sorry:"),
        ("Sorry: <none>", "Sorry:"),
    ],
)
def test_a_streaming_answer_holds_back_the_tag_being_written(streamed, shown):
    assert readable(streamed, partial=True).text == shown


def test_a_finished_answer_keeps_a_stray_angle_bracket():
    assert readable("x < y", partial=False).text == "x < y"
