"""The API's object schema reads its geometry fields from the one object type."""

import pytest
from pydantic import ValidationError

from geochat.app.schemas import DetectedObject
from geochat.records import GeoObject


@pytest.mark.parametrize("field", ["phrase", "hbb", "quad", "mask", "score"])
def test_the_api_object_shares_the_geometry_types_of_geoobject(field):
    api = DetectedObject.model_fields[field]
    assert api.annotation == GeoObject.model_fields[field].annotation


def test_the_api_object_checks_boxes_as_records_do():
    with pytest.raises(ValidationError, match="x1 must be >= x0"):
        DetectedObject(phrase=None, kind="hbb", hbb=[2.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValidationError, match="x1 must be >= x0"):
        GeoObject(hbb=[2.0, 0.0, 1.0, 1.0])
