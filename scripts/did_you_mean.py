"""`make` help for a typo: the closest known name (difflib), for unknown targets and variables.

Usage: did_you_mean.py WORD KNOWN... -> prints "did you mean X?" or nothing. Plain Python, no
project imports: it runs before `make setup` has created anything.
"""

from __future__ import annotations

import difflib
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        return 0
    word, known = argv[0], argv[1:]
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.upper(), known, n=1, cutoff=0.6)
    if close:
        print(f"did you mean {close[0]}?")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
