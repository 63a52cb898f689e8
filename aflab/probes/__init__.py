"""Probes beyond the compliance gap: would the model act against its lab, does it believe
the scenario, does the effect survive role-play and priming controls, why does it guard its
goals, and can its cue-dependence be read from its activations.

One module per probe (``activations/`` a package of its stages); their commands are in
``aflab/cli/probe.py``.
"""
