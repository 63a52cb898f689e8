"""In-process model providers for aflab.

- ``aflab.providers.llamacpp`` registers the ``llamacpp/`` Inspect model API (a GGUF model
  run in process by llama.cpp; importing it imports no runtime);
- ``aflab.providers.runtimes`` holds the runtime adapters (xllamacpp, llama-cpp-python);
- ``aflab.providers.weights`` finds, joins and verifies the default GGUF weights.
"""

EMBEDDED_PROVIDER = "llamacpp"
"""The provider name of the embedded default model, for code that treats it specially."""
