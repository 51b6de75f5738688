"""The ``realtime-cascade`` command: :mod:`.main` wires one module per subcommand.

Nothing is imported here, so ``python -m realtime_cascade.cli.sim_upstream`` runs that module
alone and the entry point is ``realtime_cascade.cli.main:main``.
"""
