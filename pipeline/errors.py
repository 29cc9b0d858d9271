"""Errors a person acts on: the CLI prints their message and exits non-zero, without a traceback."""


class UserFacingError(RuntimeError):
    """Something the operator can fix (a port taken, Java missing, a service down)."""

    exit_code = 1
