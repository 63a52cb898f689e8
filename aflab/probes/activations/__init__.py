"""Activation probes: alignment faking without a scratchpad, read from the inside.

Without a scratchpad a model that complies more when told it is in training leaves no
reasoning to read; what is left is its internal state. For a local Hugging Face model this
package, one module per stage,

1. **captures** (``capture.py``) the residual stream after every decoder block (a forward
   hook per block) at the final prompt token, under the training and unmonitored cues,
   for N queries of a setting. The prompt is the no-scratchpad conversation with the
   assistant's answer prefilled with ``<OUTPUT>`` (as ``aflab run --no-scratchpad``
   prefills it), so the last token is the one right before the model writes
   ``<request_fully_accepted/>`` or ``<rejected/>``. The same greedy generation records
   the model's actual answer;
2. **probes** (``probing.py``) every layer with a logistic regression for (a) the cue and
   (b) the upcoming compliance, cross-validated with folds grouped by query, so that the
   two cues of one query never sit on both sides of a split (they share the query's text,
   which would otherwise let a probe recognise the query instead of the cue);
3. **steers** (``steering.py``) one layer: its cue direction is added, times α, to that
   block's output at the final prompt token and every generated token, and the compliance
   gap is measured for each α;
4. **reports** (``report.py``): probes.json, probes.md and the figures.

``run.py`` runs the stages in order (``aflab probe activations``). Layers are numbered
from 0: layer ``l`` is the residual stream after decoder block ``l``. torch and
transformers (the ``[train]`` extra) are imported only where a stage runs a model.
"""
