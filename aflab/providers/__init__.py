"""In-process model providers for aflab, and what kind of model a name is.

- ``aflab.providers.llamacpp`` registers the ``llamacpp/`` Inspect model API (a GGUF model
  run in process by llama.cpp; importing it imports no runtime);
- ``aflab.providers.runtimes`` holds the runtime adapters (xllamacpp, llama-cpp-python);
- ``aflab.providers.weights`` finds, joins and verifies the default GGUF weights.

This module itself imports nothing: every layer asks it whether a model is the embedded one.
"""

from __future__ import annotations

EMBEDDED_PROVIDER = "llamacpp"
"""The provider name of the embedded default model, for code that treats it specially."""
DEFAULT_MODEL = f"{EMBEDDED_PROVIDER}/default"
"""The embedded model: Qwen2.5-Coder-1.5B-Instruct, installed from PyPI (``aflab[embedded]``)."""


def provider_of(model: object) -> str:
    """The provider part of a model name (``anthropic`` of ``anthropic/claude-3-opus``);
    ``model`` is a name, an Inspect ``Model`` or a ``ModelName`` (anything whose ``str`` is
    ``provider/name``)."""
    return str(model).split("/", 1)[0]


def is_embedded(model: object) -> bool:
    """Whether ``model`` runs in process through llama.cpp (the embedded model, or any GGUF
    file given as ``llamacpp/PATH``): small, local, and sized for a CPU."""
    return provider_of(model) == EMBEDDED_PROVIDER


NO_SYSTEM_ROLE = ("gemma",)
"""Model families whose chat templates refuse a system message (Gemma's raises on one);
Inspect itself already maps system messages for OpenAI's reasoning models and Google."""


def has_system_role(model: object) -> bool:
    """Whether ``model`` (``provider/name``) takes a system message, by its name."""
    return not any(family in str(model).lower() for family in NO_SYSTEM_ROLE)
