"""The two errors a profiler raises; the CLI maps both (by class name) to one line and exit 2.

``profilers`` never imports ``densenas``, so it has its own types rather than
``densenas.errors.DensenasError``.
"""


class ProfilerError(Exception):
    """A bad request: an option or input the backend cannot honour. The message names the field."""

    exit_code = 2


class ProfilerUnavailable(ProfilerError):
    """The backend cannot run on this machine. The message is one line: the reason, then the fix."""
