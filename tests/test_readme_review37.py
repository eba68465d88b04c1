"""What README.md says of the repository, checked against it (review 37)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cited_tests(text: str) -> list[tuple[str, str]]:
    """``(file, test)`` for every test a document cites: ``test_x.py::test_y``, or ``::test_y`` after
    the file named last before it (the failure table's 'same, ``::test_z``' reads the row above's)."""
    cited, current = [], None
    for m in re.finditer(r"(?:tests/)?(test_\w+\.py)?::(test_\w+)|(?:tests/)?(test_\w+\.py)", text):
        file, name = m.group(1) or m.group(3), m.group(2)
        current = file or current
        if name:
            cited.append((current or "", name))
    return cited


DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_the_readme_cites_each_test_in_the_file_it_names(document):
    """test_packaging's check takes a ``::test_y`` defined in any test file; the README's
    ``test_lead_review34.py::..., ::test_a_failing_data_export_leaves_no_half_written_sample`` sent the
    reader to test_lead_review34.py for a test of test_data.py. The docs' tables are checked alike."""
    defined = {f.name: set(re.findall(r"^def (test_\w+)", f.read_text(), re.M))
               for f in (ROOT / "tests").glob("test_*.py")}
    wrong = [f"{file}::{name}" for file, name in _cited_tests(document.read_text())
             if name not in defined.get(file, set())]
    assert not wrong, f"{document.name} cites tests that are not in the file it names: {wrong}"
