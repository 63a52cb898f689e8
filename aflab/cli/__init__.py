"""``aflab``: the command line, the top floor of the package.

``main`` builds the parser from one module per command group (``run``, ``prompts``,
``validate``, ``sweep``, ``docs``, ``train``, ``probe``), the options they share
(``options``) and what they print (``output``, ``tables``). Commands parse their options, call the library and print; every
problem the library reports is an ``aflab.errors.AflabError``, shown here as one red line
with exit code 2. Nothing in the library imports this package (tests/test_layers.py).
"""
