"""One class per Label Studio control tag a YOLO model can serve.

Each knows which YOLO task it needs and how to turn that task's output into its tag's regions.
"""

from .base import ControlModel
from .choices import ChoicesModel
from .keypoints import KeyPointLabelsModel
from .polygon import PolygonLabelsModel
from .rectangle import RectangleLabelsModel

CONTROL_MODELS: dict[str, type[ControlModel]] = {
    cls.tag: cls for cls in (RectangleLabelsModel, PolygonLabelsModel, KeyPointLabelsModel, ChoicesModel)
}

__all__ = ["CONTROL_MODELS", "ControlModel", "ChoicesModel", "KeyPointLabelsModel", "PolygonLabelsModel",
           "RectangleLabelsModel"]
