"""``python -m batchgen``."""

from .cli import main

main()
