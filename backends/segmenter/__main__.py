from backends.core.cli import serve

from .model import SegmenterModel

serve(SegmenterModel, default_port=9091)
