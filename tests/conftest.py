import sys
from pathlib import Path

# make tests/golden.py importable as `golden` from every test module
sys.path.insert(0, str(Path(__file__).parent))
