"""Test-only support of spare's suite: running spare as a process, buckets, crafted snapshots.

pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in pyproject.toml), so tests import
``from support.harness import ...``. What plugin authors may reuse lives in :mod:`spare.testing`
instead (the tree builders and comparers in :mod:`spare.testing.trees`).
"""
