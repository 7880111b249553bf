"""``python -m bench.protocol_noop``: the no-op backend of bench/protocol.py, served for real."""

from backends.core.cli import serve
from bench.protocol import NoopModel

if __name__ == "__main__":
    serve(NoopModel)
