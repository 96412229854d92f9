"""Make the lab tool (molecule/lab/lab.py) and the collection (as ansible_collections.webstack.django, through the
.collections/ link that `make venv` creates) importable by the tests."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "molecule" / "lab"))
sys.path.insert(0, str(ROOT / ".collections"))
