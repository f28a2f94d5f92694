"""What several commands share: a run's fields as options, the data and
sessions folders, table formats, choices that help and completion list,
session ids (``latest``, ``-1``), output files, loading the data with
one-line errors, training on Ray."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Optional, TypeVar

import typer
from typer.core import TyperCommand

from fmlab.trainer.config import PRESET_NAMES
from fmlab.trainer.fields import RUN_FIELDS, Architecture, Choice, Field, YesNo
from fmlab.trainer.sessions.store import NEWEST
from fmlab.trainer.text import visible
from fmlab.tui.cli.output import absolute, fail, usage_error

Command = TypeVar("Command", bound=Callable[..., None])

# ----------------------------------------------------------------- the commands


class FmlabCommand(TyperCommand):
    """A command whose help names its arguments the way options name their
    values (``ID...``, not ``{ID...}...`` or ``session <str>``), and whose
    arguments may be ``-1``, ``-2``...: the newest sessions, not options."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        arguments = [
            (_argument_name(p), p.help or "")
            for p in self.get_params(ctx)
            if p.param_type_name == "argument" and not p.hidden
        ]
        options = [
            record
            for p in self.get_params(ctx)
            if p.param_type_name == "option" and (record := p.get_help_record(ctx)) is not None
        ]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)

    def make_parser(self, ctx):
        parser = super().make_parser(ctx)
        process = parser._process_opts

        def newest_are_arguments(arg: str, state) -> None:
            if NEWEST.fullmatch(arg) and arg not in parser._short_opt and arg not in parser._long_opt:
                state.largs.append(arg)  # -1, -2...: an argument (a session counted from the newest)
            else:
                process(arg, state)

        parser._process_opts = newest_are_arguments
        return parser


def _argument_name(param) -> str:
    name = param.metavar or param.name.upper()
    return f"{name}..." if param.nargs != 1 else name


# ----------------------------------------------------------------- session ids

REF_HELP = "A session id, a unique prefix of one, a path, or latest (also -1), -2... counted from the newest."


def complete_session_ids(ctx, incomplete: str) -> list[str]:
    """Ids in the sessions folder (from --sessions-dir when typed before), and latest."""
    from fmlab.trainer.sessions import default_sessions_dir, is_safe_session_id
    from fmlab.trainer.sessions.store import session_file_names

    folder = ctx.params.get("sessions_dir") or default_sessions_dir()
    ids = [name.rpartition("/")[2][: -len(".json")] for name in session_file_names(Path(folder))]
    found = sorted({i for i in ids if is_safe_session_id(i)} | {"latest"})
    return [i for i in found if i.startswith(incomplete)]


def complete_sweep_ids(ctx, incomplete: str) -> list[str]:
    from fmlab.trainer.sessions import default_sessions_dir, is_safe_session_id
    from fmlab.trainer.studies.sweep import sweeps_dir

    folder = sweeps_dir(Path(ctx.params.get("sessions_dir") or default_sessions_dir()))
    try:
        ids = [p.stem for p in folder.glob("*.json")]
    except OSError:
        ids = []
    found = sorted({i for i in ids if is_safe_session_id(i)} | {"latest"})
    return [i for i in found if i.startswith(incomplete)]


def session_ref_option(flag: str, help: str, metavar: str = "ID", sweeps: bool = False):
    complete = complete_sweep_ids if sweeps else complete_session_ids
    return typer.Option(None, flag, metavar=metavar, help=help, autocompletion=complete)


def session_ref_argument(help: str = REF_HELP):
    return typer.Argument(..., metavar="ID", help=help, autocompletion=complete_session_ids)


# ----------------------------------------------------------------- choices


def choices_metavar(choices: Sequence[str], more: str = "") -> str:
    """``[sgd|adam]``: what help shows for an option with choices."""
    return "[" + "|".join([*choices, *([more] if more else [])]) + "]"


def complete_from(choices: Sequence[str], lists: bool = False):
    """A shell_complete callback offering ``choices``; with ``lists``, the
    one after the last comma of a comma-separated list."""

    def complete(ctx, incomplete: str) -> list[str]:
        head, comma, last = incomplete.rpartition(",") if lists else ("", "", incomplete)
        taken = set(head.lower().split(","))
        return [head + comma + c for c in choices if c.startswith(last.lower()) and c not in taken]

    return complete


def choice_option(default: object, flag: str, choices: Sequence[str], help: str, **more):
    """An option whose value is one of ``choices``: help lists them and the
    shell completes them; the command checks the value (so every refusal is
    one line, with the others)."""
    return typer.Option(
        default,
        flag,
        help=help,
        metavar=choices_metavar(choices),
        autocompletion=complete_from(choices),
        **more,
    )


def run_field_options(
    *, lists: bool = False, unset: Collection[str] = (), after: str | None = None
) -> Callable[[Command], Command]:
    """Give a command one option per field of a run (fmlab.trainer.fields),
    right after its parameter ``after`` (or first); it takes them as
    ``**fields`` by field name and hands them to parse_run_config or
    parse_grid. Typer reads the options from the command's ``__signature__``.

    With ``lists``, an axis field takes a comma-separated list and is None
    when not given, as is every field named in ``unset`` (something else, a
    preset, may fill it); every other option has the field's default.
    """

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in signature.parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        at = 0 if after is None else [p.name for p in own].index(after) + 1
        options = [
            _field_option(f, listed=lists and f.axis is not None, unset=f.name in unset) for f in RUN_FIELDS
        ]
        command.__signature__ = signature.replace(parameters=[*own[:at], *options, *own[at:]])
        return command

    return decorate


def _field_option(field: Field, *, listed: bool, unset: bool) -> inspect.Parameter:
    help_text, metavar = (field.axis.help, field.axis.metavar) if listed else (field.help, field.metavar)
    parser = field.parser
    if isinstance(parser, YesNo):
        default: object = None if unset else field.default
        option = typer.Option(default, f"{field.flag}/--no-{field.option}", help=help_text)
        annotation: object = Optional[bool] if default is None else bool
    else:
        default = None if unset or listed else field.text(field.default)
        choices: tuple[str, ...] = ()
        if isinstance(parser, Choice):
            choices = parser.choices
            metavar = metavar if listed else choices_metavar(choices)
        elif isinstance(parser, Architecture):
            choices = PRESET_NAMES
            metavar = metavar if listed else choices_metavar(choices, "WIDTHS|LAYERS")
        complete = complete_from(choices, lists=listed) if choices else None
        option = typer.Option(default, field.flag, help=help_text, metavar=metavar, autocompletion=complete)
        annotation = Optional[str] if default is None else str
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
    )


MODEL_HELP = (
    "Train your own torch nn.Module instead of --arch: FACTORY() in FILE.py builds it; it takes "
    "[batch, 1, 28, 28] images and gives [batch, 10] logits. This RUNS the code in FILE.py."
)


def model_option() -> object:
    return typer.Option(None, "--model", help=MODEL_HELP, metavar="FILE.py:FACTORY")


def with_model(fields: dict[str, object], model: str | None) -> dict[str, object]:
    """The fields with ``--model``'s module, loaded (its file runs), as the
    architecture; a module that cannot be loaded is a usage error."""
    if model is None:
        return fields
    from fmlab.trainer.config import ConfigError, ModelSpec, looks_like_module
    from fmlab.trainer.user_module import load_module_ref
    from fmlab.tui.cli.output import config_usage_error, usage_error

    if not looks_like_module(model):
        usage_error("model", f"{model!r} is not FILE.py:FACTORY (presets and layer stacks go in --arch)")
    try:
        return {**fields, "arch": ModelSpec((), module=load_module_ref(model, "model"))}
    except ConfigError as exc:
        config_usage_error(exc)


# ----------------------------------------------------------------- Ray

RAY_HELP = (
    "Train the stacks as Ray tasks, all at once: on a Ray instance started here, or on the cluster "
    "--ray-address names. Needs pip install 'fmlab[ray]'; sessions are saved here as usual."
)
RAY_ADDRESS_HELP = (
    "The Ray cluster to train on (implies --ray): auto for the one `ray start` runs on this machine "
    "(or RAY_ADDRESS names), or HOST:PORT of its head. Every node needs fmlab installed."
)


def ray_option():
    return typer.Option(False, "--ray", help=RAY_HELP)


def ray_address_option():
    return typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP, metavar="auto|HOST:PORT")


def wants_ray(ray: bool, address: Optional[str], model: Optional[str] = None) -> bool:
    """Whether the command trains on Ray; a module of the user's (``--model``)
    is refused there, its file is not sent to the workers (exit 2)."""
    if not ray and address is None:
        return False
    if model is not None:
        usage_error("model", "a module of your own trains without --ray: its file is not sent to Ray workers")
    return True


MAX_THREADS = 1024
THREADS_HELP = (
    "Torch threads to train with. By default one per core, and for MLPs fewer while other "
    "programs keep cores busy (their numbers are the same at any count); N pins the count. "
    "With --ray: CPUs per Ray task."
)


def threads_option():
    return typer.Option(None, "--threads", help=THREADS_HELP, metavar="N", show_default=False)


def parse_threads(text: Optional[str]) -> int | None:
    """--threads as a count (None: follow the load); bad values: one line, exit 2."""
    if text is None:
        return None
    try:
        threads = int(text.strip())
    except ValueError:
        threads = 0
    if not 1 <= threads <= MAX_THREADS:
        usage_error("threads", f"a whole number from 1 to {MAX_THREADS}, not {visible(text)!r}")
    return threads


@contextmanager
def stack_runner(ray: bool, address: Optional[str], threads: int | None = None) -> Iterator[object]:
    """The stack runner the command asked for: LocalStacks (train here, stack
    by stack; ``threads`` None follows the load) or RayStacks, connected for
    the block. Ray not installed or a cluster out of reach: one line, exit 1."""
    if not ray and address is None:
        from fmlab.trainer.jobs import LocalStacks

        yield LocalStacks(threads)
        return
    from rich.markup import escape

    from fmlab.trainer.cluster import ClusterError, connected
    from fmlab.trainer.remote import RayStacks
    from fmlab.tui.cli.progress import spinner

    address = address.strip() if address is not None else None
    connection = ExitStack()
    problem = None
    with spinner(
        "starting Ray…" if address is None else f"joining the Ray cluster at {escape(visible(address))}…"
    ):
        try:
            connection.enter_context(connected(address))
        except ClusterError as exc:
            problem = exc
    if problem is not None:
        fail(problem)
    with connection:
        yield RayStacks(cpus_per_task=threads)


DATA_DIR_HELP = "Folder holding the four Fashion-MNIST IDX files (plain or .gz); else ./data, then others."


SESSIONS_HELP = "Where session files are saved (./sessions unless set)."


def _env_left_to_the_core(ctx, param, value):
    """A folder named by its environment variable is left for the core to
    find (it names the variable in its messages); the option only shows it."""
    from typer._click.core import ParameterSource

    return None if ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT else value


def sessions_dir_option(help: str = SESSIONS_HELP):
    return typer.Option(None, "--sessions-dir", help=help, show_default=False, metavar="DIR",
                        envvar="FMLAB_SESSIONS", show_envvar=True, callback=_env_left_to_the_core)  # fmt: skip


def data_dir_option():
    return typer.Option(None, "--data-dir", help=DATA_DIR_HELP, metavar="DIR",
                        envvar="FMLAB_DATA", show_envvar=True, callback=_env_left_to_the_core)  # fmt: skip


def format_option():
    from fmlab.trainer.studies.tables import FORMATS

    return choice_option("markdown", "--format", FORMATS, FORMAT_HELP)


def json_option(help: str = "Print JSON instead of text."):
    return typer.Option(False, "--json", help=help)


def quiet_option(help: str = "No progress display."):
    return typer.Option(False, "--quiet", "-q", help=help)


def resolve_sessions_dir(value: Optional[Path]) -> Path:
    from fmlab.trainer.sessions import default_sessions_dir

    return value if value is not None else default_sessions_dir()


def require_writable_dir(path: Path, option: str) -> None:
    """Refuse up front a folder runs could not save into."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        usage_error(option, f"cannot create {path} ({exc.strerror or exc})")
    if not path.is_dir():
        usage_error(option, f"{path} is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        usage_error(option, f"{path} is not writable")


FORMAT_HELP = "Table format (--json is --format json)."


class LiveStdout:
    """Writes to whatever sys.stdout is at the time, so rich's live display
    (which swaps sys.stdout while it runs) keeps table lines above the bar."""

    def write(self, text: str) -> int:
        import sys

        return sys.stdout.write(text)

    def flush(self) -> None:
        import sys

        sys.stdout.flush()


def check_format(fmt: str, json_output: bool = False) -> str:
    """The table format: ``--format``, or json for ``--json``."""
    from fmlab.trainer.studies.tables import FORMATS

    value = fmt.strip().lower()
    if value not in FORMATS:
        usage_error("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    if json_output:
        if value not in ("markdown", "json"):  # markdown: the default, not given
            usage_error("json", f"--json asks for JSON; --format says {value}")
        return "json"
    return value


def check_out_file(out: Optional[Path], option: str = "out") -> None:
    if out is None:
        return
    if out.is_dir():
        usage_error(option, f"{out} is a folder; give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        usage_error(option, f"folder {parent} does not exist")


def load_data(data_dir: Optional[Path], device: str):
    """A DatasetCache holding the data on ``device``, or a one-line exit."""
    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.data import DataError, DatasetCache

    datasets = DatasetCache(data_dir)
    try:
        datasets.get(device)
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    except DataError as exc:
        fail(str(exc))
    return datasets


def write_out(out: Optional[Path], text: str) -> None:
    if out is None:
        return
    from fmlab.trainer.atomic import write_atomic

    try:
        write_atomic(out, text)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"table saved: {absolute(out)}", err=True)


class SaveWarnings:
    """Prints the warnings of a training command. A save that failed (a full
    disk, say) is told once per reason: under a sweep of 16 runs it is one
    line, not 16. Each command makes its own."""

    def __init__(self) -> None:
        self.reasons: set[str] = set()

    def __call__(self, message: str) -> None:
        if not message.startswith(("cannot save ", "cannot create ")):
            typer.echo(f"Warning: {message}", err=True)
            return
        reason = message.rsplit(": ", 1)[-1]  # "cannot save PATH: No space left on device"
        if reason not in self.reasons:
            self.reasons.add(reason)
            typer.echo(f"Warning: {message}; training goes on", err=True)
