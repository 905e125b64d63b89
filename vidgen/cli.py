"""The `vidgen` command: parse options, call one function, print. Nothing else lives here."""

import typer

from vidgen import __version__

app = typer.Typer(
    name="vidgen",
    help="Generate videos with CogVideoX and Helios on your own GPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vidgen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Generate videos with CogVideoX and Helios on your own GPU."""
