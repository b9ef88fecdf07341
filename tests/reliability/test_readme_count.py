"""The README's "Reliability" section states how many cases this folder tests; keep it true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
README = HERE.parents[1] / "README.md"


def collected_cases() -> int:
    """Test cases pytest collects in tests/reliability (every parametrization counts)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                          "no:cacheprovider", str(HERE)], capture_output=True, text=True,
                         cwd=HERE.parents[1], check=True).stdout
    return sum(1 for line in out.splitlines() if "::" in line)


def test_readme_states_the_number_of_reliability_cases():
    count = collected_cases()
    stated = re.search(r"\*\*(\d+) reliability cases\*\*", README.read_text())
    assert stated, "README.md needs a '**N reliability cases**' line under Reliability"
    assert int(stated.group(1)) == count, (
        f"README.md says {stated.group(1)} reliability cases; tests/reliability has {count}. "
        f"Update the README.")
