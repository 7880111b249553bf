"""RQ worker entry point: ``python -m backends.worker`` (see ``__main__``)."""
