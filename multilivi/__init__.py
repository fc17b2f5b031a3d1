"""multilivi: latent interaction models for single-cell multi-omic donor cohorts, and their benchmark."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("multilivi")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
