from backends.core.cli import serve

from .model import DetectorModel

serve(DetectorModel, default_port=9090)
