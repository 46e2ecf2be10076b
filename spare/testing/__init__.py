"""Conformance suites for spare plugins.

Third-party storage, transform and lock plugins import these classes into their own test suite,
subclass them and provide the fixture each one names; spare's built-ins pass the same suites::

    from spare.testing.storage import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage(self):
            yield MyStorage(...)  # a fresh, empty bucket
"""
