"""The README's Python examples run as written and print what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)

# What each example prints, in README order (the README's comments say the same).
EXPECTED = [
    "serving on llama-8b\n['embed', 'qwen-14b']\n",
    "code ('rerank', 'qwen-2.5-14b') 2\n",
    "fifo 3 25.0\narrival 12 101.5\n",
]


def test_every_readme_example_has_an_expected_output() -> None:
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize(("code", "expected"), list(zip(BLOCKS, EXPECTED, strict=False)))
def test_readme_example_prints_what_the_readme_says(code: str, expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == expected
