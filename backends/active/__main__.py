import sys

if len(sys.argv) > 1 and sys.argv[1] == "score":
    from .cli import main

    sys.exit(main(sys.argv[2:]))

from backends.core.cli import serve

from .model import ActiveModel

serve(ActiveModel, default_port=9092)
