"""docs/mobilemoney.md's error table is the one the code uses."""

import os

from connectors.mobilemoney.errors import markdown_table

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "mobilemoney.md")


def test_the_docs_error_table_is_the_codes():
    with open(DOC) as file:
        text = file.read()
    start = text.index("<!-- error table: generated -->") + len("<!-- error table: generated -->")
    end = text.index("<!-- end error table -->")
    assert text[start:end].strip() == markdown_table()
