"""fmlab's front ends: the ``fmlab`` command line and the Textual app.

Importing this package loads nothing heavy; the command line imports torch or
Textual only inside the commands that need them.
"""
