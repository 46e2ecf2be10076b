"""spare: one S3 backup, encrypted on the fly."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spare")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
