"""The one exception type for problems the user can fix."""


class DcganError(Exception):
    """Bad input or state the user can fix.

    The CLI prints the message as one line (no traceback) and exits with ``exit_code``.
    The message says what is wrong and what to do about it.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
