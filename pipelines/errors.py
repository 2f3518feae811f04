"""The one error type a user sees: a message that says what, where and why, without a traceback."""


class SettleError(Exception):
    """Bad configuration, bad input or a refused operation. The CLI prints it and exits 1."""
