from __future__ import annotations

from aido.cli.main import main

if __name__ == "__main__":
    main()
