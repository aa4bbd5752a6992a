"""``edgewatch-lab``: the development commands (a source checkout only; not part of the edge wheel)."""

from __future__ import annotations

import click

from edge_runtime import clierror
from lab.bench import command as bench


@click.group(cls=clierror.OneLineErrors, epilog=clierror.EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """edgewatch's lab: benchmarks of the edge (and the trainer's baselines). Development only."""


main.add_command(bench, "bench")

if __name__ == "__main__":
    main()
