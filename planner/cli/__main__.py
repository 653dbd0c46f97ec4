"""`python -m planner.cli`: the same as the gpuplan command."""

from planner.cli import main

main()
