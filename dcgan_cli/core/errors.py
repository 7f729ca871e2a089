"""The one exception type for problems the user can fix, and the exit codes of the command line."""


class ExitCode:
    """What ``dcgan`` exits with; scripts can tell these apart (docs/cli.md, "Exit codes")."""

    OK = 0
    INTERNAL = 1  # a bug: an unexpected exception (DCGAN_DEBUG=1 shows the traceback)
    USAGE = 2  # a command line Typer/Click could not parse (unknown option, missing value)
    BAD_INPUT = 3  # DcganError: a file, value or state the user can fix
    INTERRUPTED = 130  # Ctrl-C (SIGINT), after a clean stop
    TERMINATED = 143  # SIGTERM, after a clean stop


class DcganError(Exception):
    """Bad input or state the user can fix.

    The CLI prints the message as one line (no traceback) and exits with ``exit_code``.
    The message says what is wrong and what to do about it.
    """

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
