"""Errors caused by the user's input. The CLI prints their message, without a traceback."""


class UserError(Exception):
    """Bad input: the message says what was wrong and what is valid."""


class ConfigError(UserError, ValueError):
    pass
