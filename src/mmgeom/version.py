"""Single source of the package version (read by setuptools and ``mmgeom.__version__``)."""

__version__ = "0.1.0"
