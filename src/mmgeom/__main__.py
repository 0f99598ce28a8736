"""``python -m mmgeom``: the same command line as ``mmgeom``."""

from .cli import main

if __name__ == "__main__":
    main()
