"""`python -m switch.core result-codes`: print docs/result-codes.md from the enum."""

import sys

from switch.core.results import markdown_table

if __name__ == "__main__":
    if sys.argv[1:] != ["result-codes"]:
        sys.exit("usage: python -m switch.core result-codes > docs/result-codes.md")
    sys.stdout.write(markdown_table())
