"""aflab: alignment-faking experiments on any language model, built on Inspect AI."""
