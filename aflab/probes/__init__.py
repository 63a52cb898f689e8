"""Probes beyond the compliance gap: would the model act against its lab, does it believe
the scenario, does the effect survive role-play and priming controls, why does it guard its
goals, and can its cue-dependence be read from its activations.

Each probe module adds its own ``aflab probe NAME`` command through ``add_commands``.
"""
