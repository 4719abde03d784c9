"""The project's own error type: a user mistake, reported as one line and exit code 2."""


class DensenasError(Exception):
    """A problem with something the user handed us (a file, a field, an option).

    The CLI turns it into one line on stderr and exit code 2; library callers can
    catch it. The message must name the file, field or op at fault.
    """

    exit_code = 2


class BackendUnavailable(DensenasError):
    """A profiler backend cannot run on this machine; the message says why and the fix."""
