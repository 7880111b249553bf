"""One class per Label Studio control tag a YOLO model can serve.

Each knows which YOLO task it needs and how to turn that task's output into its tag's regions.
"""

from typing import Any

from .base import ControlModel, truthy
from .brush import BrushLabelsModel
from .choices import ChoicesModel
from .keypoints import KeyPointLabelsModel
from .polygon import PolygonLabelsModel
from .rectangle import RectangleLabelsModel
from .rotated import RotatedRectangleLabelsModel
from .video_rectangle import VideoRectangleModel

CONTROL_MODELS: dict[str, type[ControlModel]] = {
    cls.tag: cls for cls in (RectangleLabelsModel, PolygonLabelsModel, BrushLabelsModel, KeyPointLabelsModel,
                              ChoicesModel, VideoRectangleModel)
}



def control_model_for(control: Any) -> type[ControlModel] | None:
    """The class serving a Label Studio control: by tag, and for ``<RectangleLabels
    model_obb="true">`` the rotated boxes of a YOLO OBB model."""
    if control.tag == "RectangleLabels" and truthy((control.attr or {}).get("model_obb", "false")):
        return RotatedRectangleLabelsModel
    return CONTROL_MODELS.get(control.tag)


__all__ = ["CONTROL_MODELS", "BrushLabelsModel", "ChoicesModel", "ControlModel", "KeyPointLabelsModel", "PolygonLabelsModel",
           "RectangleLabelsModel", "RotatedRectangleLabelsModel", "VideoRectangleModel", "control_model_for"]
