"""Subprocesses the tests start (the notebooks' kernels, ``torchrun``) import this checkout's
package, not whichever copy is installed: they start elsewhere than the repository root."""

import os
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)
