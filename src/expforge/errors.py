"""One exception type for bad input, so every entry point can print a single clear line and exit 2."""


class ExpforgeError(Exception):
    """A user-facing error: the message names the file/row/flag and what was expected.

    Raised for bad input (a corrupt manifest, a missing image, an invalid flag). Bugs stay ordinary
    exceptions with tracebacks; this type is for problems the user can fix.
    """
