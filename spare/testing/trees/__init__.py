"""File trees to back up and restore in tests and benchmarks, and ways to tell what a restore lost.

Spare's own suite, ``benchmarks/fidelity.py`` and plugin authors who check a round trip through
their storage or transform use the same code:

* :mod:`~spare.testing.trees.content`: file contents, names and mtimes that show any loss
  (``compressible_text``, ``pattern_bytes``, ``odd_mtime_ns``, ``WEIRD_NAMES``);
* :mod:`~spare.testing.trees.plan`: ``TreePlan``, which builds entries and applies owners, modes,
  capabilities and mtimes at the end in the one order that keeps them; ``set_mtimes``;
* :mod:`~spare.testing.trees.rich`: the richest tree a Linux file system can hold, part by part
  (``build_tree``, ``build_richest_tree``);
* :mod:`~spare.testing.trees.simple`: a small tree of the classic cases (``build_rich_tree``),
  ``snapshot_tree`` and ``assert_trees_equal``;
* :mod:`~spare.testing.trees.scan` and :mod:`~spare.testing.trees.compare`: ``scan_tree``
  records every entry down to the last bit, ``compare_scans`` lists every difference by category.

Standard library only, Linux only (directory descriptors, ``/proc/self/fd``, xattrs).
"""

from spare.testing.trees.compare import (
    CATEGORIES,
    FIELDS,
    Difference,
    compare_scans,
    compare_trees,
    count_by_category,
    show,
)
from spare.testing.trees.content import (
    BASE_MTIME_NS,
    NFC,
    NFD,
    PRE_1970_NS,
    WEIRD_NAMES,
    Y2038_NS,
    YEAR_1971_NS,
    YEAR_2099_NS,
    MiB,
    compressible_text,
    odd_mtime_ns,
    pattern_bytes,
)
from spare.testing.trees.plan import TreePlan, named_ids, set_mtimes, unnamed_id
from spare.testing.trees.rich import EXTRA_PARTS, PARTS, build_richest_tree, build_tree
from spare.testing.trees.scan import scan_tree
from spare.testing.trees.simple import (
    assert_trees_equal,
    build_rich_tree,
    regular_files,
    set_odd_mtimes,
    snapshot_tree,
    write_file,
)

__all__ = [
    "BASE_MTIME_NS",
    "CATEGORIES",
    "EXTRA_PARTS",
    "FIELDS",
    "NFC",
    "NFD",
    "PARTS",
    "PRE_1970_NS",
    "WEIRD_NAMES",
    "Y2038_NS",
    "YEAR_1971_NS",
    "YEAR_2099_NS",
    "Difference",
    "MiB",
    "TreePlan",
    "assert_trees_equal",
    "build_rich_tree",
    "build_richest_tree",
    "build_tree",
    "compare_scans",
    "compare_trees",
    "compressible_text",
    "count_by_category",
    "named_ids",
    "odd_mtime_ns",
    "pattern_bytes",
    "regular_files",
    "scan_tree",
    "set_mtimes",
    "set_odd_mtimes",
    "show",
    "snapshot_tree",
    "unnamed_id",
    "write_file",
]
