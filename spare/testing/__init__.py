"""Conformance suites for spare plugins, and file trees to test round trips with.

Third-party storage, transform and lock plugins import these classes into their own test suite,
subclass them and provide the fixture each one names; spare's built-ins pass the same suites::

    from spare.testing.storage import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage(self):
            yield MyStorage(...)  # a fresh, empty bucket

:mod:`spare.testing.trees` builds trees that show any loss in a backup and restore, and compares
what was restored with what was backed up.
"""
