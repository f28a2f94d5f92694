"""fmlab's headless core: data, models, the training engine and session files.

Importing this package is cheap: modules that need torch import it themselves,
so the command line can answer ``--help`` without loading torch.
"""
