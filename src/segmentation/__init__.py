"""Customer segmentation: validated tables -> features -> segments -> reproducible model bundles."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("customer-segmentation")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
