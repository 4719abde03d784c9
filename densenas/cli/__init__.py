"""The ``densenas`` command: one typer app; each command module only parses, calls the
library and prints. User errors become one line on stderr and exit code 2, here and
nowhere else."""

from __future__ import annotations

import sys

import typer

from densenas.errors import DensenasError

app = typer.Typer(
    name="densenas",
    help="Hardware-aware latency profiling and DenseNAS architecture search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module registers its commands on ``app``; this order is the order in --help,
# from the end-to-end job through the pipeline's steps to the tools around them.
from densenas.cli import (  # noqa: E402
    arch,
    bench,
    data,
    derive,
    export,
    lut,
    predict,
    profile,
    quickstart,
    search,
    space,
    train,
    validate,
)

for _module in (quickstart, space, profile, lut, validate, search, derive, predict, arch, export, bench, train, data):
    _module.register(app)


def _user_error(message: str, code: int = 2) -> SystemExit:
    first_line = " ".join(str(message).split("\n")[0].split())
    sys.stderr.write(f"error: {first_line}\n")
    sys.stderr.flush()
    return SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Typer handles usage errors (exit 2) and Ctrl-C; our
    own errors and the profilers' arrive here and become one line and exit 2."""
    try:
        app(args=argv)
    except DensenasError as exc:
        raise _user_error(str(exc), exc.exit_code) from None
    except Exception as exc:
        from densenas.profilers.errors import ProfilerError

        if isinstance(exc, ProfilerError):
            raise _user_error(str(exc)) from None
        raise
