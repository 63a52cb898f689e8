"""Inspect entry point: importing this registers aflab's tasks and model providers."""

from aflab.providers import llamacpp  # noqa: F401  (registers the llamacpp/ model API)
from aflab.tasks import alignment_faking, helpful_only  # noqa: F401
