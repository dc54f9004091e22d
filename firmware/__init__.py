"""Umbra sensor firmware: the application on top of hal/."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("umbra")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
