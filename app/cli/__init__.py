"""The ``sealgate`` command line: the same domain functions as the API, no HTTP in between."""
