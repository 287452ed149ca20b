"""`python -m tinyprop`: the `tinyprop` command."""
from tinyprop.cli import main

main(prog_name="tinyprop")
