"""Every problem aflab reports to a person, as one hierarchy.

Library code raises these with a one-line message that names the problem and its fix; the
command line (``aflab.cli``) turns any ``AflabError`` into that line and exit code 2,
never a traceback. Faults that a retry may cure (a provider returning nothing, a runtime
hiccup) are not here: they stay with the code that retries them.
"""

from __future__ import annotations


class AflabError(Exception):
    """A problem with what the user gave aflab, said in one line with its fix."""


class UsageError(AflabError, ValueError):
    """An option or value that cannot be used as given (a bad layer list, a missing file)."""


class SettingError(AflabError, ValueError):
    """A setting, its template or its query file cannot be used as given."""


class SweepError(AflabError, ValueError):
    """A sweep file or sweep option that cannot be used as given."""


class ReportError(AflabError, ValueError):
    """A log that cannot be reported on."""


class LabelsError(AflabError, ValueError):
    """A labelled-transcripts file that cannot be used for validation."""


class CostError(AflabError, ValueError):
    """A price table or a cost question that cannot be used as given."""


class ScreenConfigError(AflabError, ValueError):
    """The offline screen's data file (``screen.toml``) cannot be used as written."""


class SynthDocsError(AflabError, ValueError):
    """A universe, corpus or option of the document pipeline that cannot be used as given."""


class DataFileError(AflabError, ValueError):
    """A JSONL or other data file that cannot be read or written."""


class WeightsError(AflabError, RuntimeError):
    """The embedded model's weights cannot be found, joined or verified."""


class LlamaCppError(AflabError, RuntimeError):
    """A local GGUF model that cannot be loaded or run in process."""
