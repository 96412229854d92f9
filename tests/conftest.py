"""Make the lab tool (molecule/lab/lab.py) importable by the tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "molecule" / "lab"))
