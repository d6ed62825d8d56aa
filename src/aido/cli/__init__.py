"""The ``aido`` command: parse, call the sandbox manager, render. No logic of its own."""
