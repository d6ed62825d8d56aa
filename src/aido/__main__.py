import os
import sys

# `python -m aido` puts the current directory first on sys.path. aido imports
# standard-library modules lazily, so an untrusted `secrets.py` or `json.py` sitting
# next to the task would be imported on the host, outside any sandbox. Drop it.
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from aido.cli.main import main

if __name__ == "__main__":
    main()
