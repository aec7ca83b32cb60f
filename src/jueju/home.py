"""Where the models and the default config are, and where the pipeline writes.

A home is a folder laid out like the checkout: config/cfg.ini (every setting's default) and
models/ (the committed models). It is, first found: the folder JUEJU_HOME names, the checkout
this package runs from (src/jueju), or the installed package's own copy, which the wheel
carries as package data (setup.py puts config/ and models/ under jueju/share/).

The installed copy is read-only: there, what the pipeline writes (data/, logs/ and the models
`jueju train` makes) goes under the working folder the program started in instead.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "JUEJU_HOME"
PACKAGE = Path(__file__).resolve().parent
PACKAGED = PACKAGE / "share"  # the wheel's copy of config/ and models/


def _find() -> tuple[Path, str]:
    """The home, and how it was found (for messages)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).resolve(), f"{HOME_ENV}={os.environ[HOME_ENV]}"
    checkout = PACKAGE.parents[1]
    if PACKAGE.parent.name == "src" and (checkout / "config" / "cfg.ini").is_file():
        return checkout, "the checkout"
    return PACKAGED, "the installed package"


PROJECT_ROOT, FOUND_BY = _find()
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "cfg.ini"
# where the config's relative paths write: the home, unless it is the installed package
WORKSPACE = Path.cwd() if PROJECT_ROOT == PACKAGED else PROJECT_ROOT
