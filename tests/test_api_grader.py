"""A real grader on a handful of transcripts; runs only where an API key is set."""

import asyncio
import os

import pytest
from inspect_ai.model import get_model

from aflab.classifiers.validate import load_labels, validate

GRADERS = [("OPENAI_API_KEY", "openai/gpt-4o"), ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5")]
available = [model for key, model in GRADERS if os.environ.get(key)]

pytestmark = [pytest.mark.api, pytest.mark.skipif(not available, reason="no grader API key (OPENAI_API_KEY or ANTHROPIC_API_KEY)")]


@pytest.mark.parametrize("classifier", ["af-original", "af-improved"])
def test_real_grader_classifies_a_few_transcripts(classifier, tmp_path):
    rows = load_labels()
    handful = [r for r in rows if r.label][:3] + [r for r in rows if not r.label][:3]
    result = asyncio.run(validate(classifier, get_model(available[0]), handful, votes=3, out=tmp_path))
    assert result["unreadable"] == 0
    assert result["accuracy"] >= 0.5  # a frontier grader should beat chance on clear cases
