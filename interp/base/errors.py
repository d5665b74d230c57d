"""One-line, user-facing errors; the CLI prints them without traceback."""


class InterpError(Exception):
    """Bad input or state the user can fix; the message says how, in one line."""
