"""The pieces of ``benchmarks/bench.py``, one module per responsibility.

``common`` (paths, units, progress notes), ``datasets`` (the generated trees), ``trees`` (tree
comparison and disk usage), ``s3`` (the --s3 mode and its minimal client), ``process`` (running a
measured child), ``tools`` (the spare, restic and borg adapters), ``runs`` (one measured run) and
``report`` (medians, the table and the JSON file). Standard library only.
"""
