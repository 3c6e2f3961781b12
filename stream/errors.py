"""The one exception type for user mistakes: the CLI prints its message and exits 2."""


class UserError(Exception):
    """A bad argument, file or config; shown as one line, never as a traceback."""
