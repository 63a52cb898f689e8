"""In-process model providers for aflab.

``aflab.providers.llamacpp`` registers the ``llamacpp/`` Inspect model API (an embedded
llama.cpp runtime); ``aflab.providers.weights`` finds and verifies its GGUF weights.
Importing this package imports nothing heavy.
"""
