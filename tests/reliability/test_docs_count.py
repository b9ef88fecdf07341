"""docs/reliability.md states how many cases this folder tests; keep it true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PAGE = HERE.parents[1] / "docs" / "reliability.md"


def collected_cases() -> int:
    """Test cases pytest collects in tests/reliability (every parametrization counts)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                          "no:cacheprovider", str(HERE)], capture_output=True, text=True,
                         cwd=HERE.parents[1], check=True).stdout
    return sum(1 for line in out.splitlines() if "::" in line)


def test_the_reliability_page_states_the_number_of_reliability_cases():
    count = collected_cases()
    stated = re.search(r"\*\*(\d+) reliability cases\*\*", PAGE.read_text())
    assert stated, "docs/reliability.md needs a '**N reliability cases**' line"
    assert int(stated.group(1)) == count, (
        f"docs/reliability.md says {stated.group(1)} reliability cases; tests/reliability has "
        f"{count}. Update the page.")
