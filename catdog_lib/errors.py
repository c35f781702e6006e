"""The one exception type users see: a message that names the problem and the fix."""


class CatdogError(Exception):
    """A problem with the user's input or environment; the CLI prints it and exits with status 2."""
