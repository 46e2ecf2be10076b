"""The pieces of ``benchmarks/bench.py``, one module per responsibility.

``common`` (paths, units, progress notes), ``generators`` (seeded text, random bytes, trees, the
copied corpus), ``datasets`` (sizes, stamps, preparing a data set), ``change`` (the seeded 1 %
change), ``trees`` (tree comparison, disk usage, what a run wrote), ``s3`` (the --s3 mode and its
minimal client), ``s3moto`` (moto server and the counting proxy of --s3 moto), ``process``
(running a measured child), ``tools`` (the spare, restic and borg adapters), ``runs`` (one
measured run), ``report`` (medians, tables, JSON) and ``targets`` (the performance targets).
Standard library only.
"""
