"""`python -m xstream` runs the command line."""

from .cli import main

main()
