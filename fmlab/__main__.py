"""``python -m fmlab``: the same as the ``fmlab`` command."""

from fmlab.tui.cli import main

if __name__ == "__main__":
    main()
