"""The ``fmlab`` command line.

One module per command (or group of commands), registered on ``app`` here;
what they share is in ``options`` and ``output``. Every command imports torch,
Textual or matplotlib inside its own body, so ``fmlab --help`` and the listing
commands start fast. Values are validated by fmlab.trainer.config; a bad one
ends the command with one line and exit status 2, a failure (missing data,
unreadable file) with one line and status 1, a training stopped by Ctrl+C or
SIGTERM with 130 or 143 (after saving it). Shell completion comes with
``--install-completion`` and ``--show-completion``.
"""

from __future__ import annotations

import typer

from fmlab.tui.cli import app_command, grads, info, reproduce, serve, sessions, sweep, train
from fmlab.tui.cli.options import FmlabCommand
from fmlab.tui.cli.output import USAGE_ERROR

app = typer.Typer(
    name="fmlab",
    help=(
        "fmlab: train and compare small image classifiers on Fashion-MNIST.\n\n"
        "Run with no command to open the app (in a terminal; elsewhere this help).\n\n"
        "\b\nExamples:\n"
        "  fmlab train --lr 0.1 --epochs 10     the reference run (about 87% test accuracy)\n"
        "  fmlab params --arch deeper           parameter counts per layer\n"
        "  fmlab sessions list                  saved runs\n"
        "  fmlab COMMAND --help                 every option of a command"
    ),
    no_args_is_help=False,
    # plain click help and errors: they need no rich import, so --help is instant
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
sessions_app = typer.Typer(
    help="List and inspect saved sessions; print their file format.", no_args_is_help=True
)
app.add_typer(sessions_app, name="sessions")


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fmlab")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"fmlab {installed_version()}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=print_version,
        is_eager=True,
        help="Print fmlab's version and exit.",
    ),
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    if not app_command.in_a_terminal():
        # no terminal to draw the app on (a pipe, a cron job, a CI log): say what there is
        typer.echo(ctx.get_help(), err=True)
        raise typer.Exit(USAGE_ERROR)
    app_command.open_app(replay=None, sessions_dir=None, data_dir=None)


def command(group: typer.Typer, function, name: str | None = None) -> None:
    group.command(name, cls=FmlabCommand)(function)


command(app, app_command.tui_command, "tui")
command(app, train.train)
command(app, info.data)
command(app, info.params)
command(sessions_app, sessions.sessions_list, "list")
command(sessions_app, sessions.sessions_show, "show")
command(sessions_app, sessions.sessions_schema, "schema")
command(app, sessions.export)
command(app, sweep.sweep)
command(app, grads.grads)
command(app, reproduce.reproduce)
command(app, serve.serve)


def main() -> None:
    # one name however it is started (python -m fmlab too): help and completion say fmlab
    app(prog_name="fmlab")


if __name__ == "__main__":
    main()
