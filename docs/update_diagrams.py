"""Regenerate the state diagrams embedded in docs/ from the specs they draw.

    python docs/update_diagrams.py            rewrite every stale block
    python docs/update_diagrams.py --check    change nothing; exit 1 if a block is stale

Each page listed in PAGES holds one block between ``<!-- diagram:begin -->`` and
``<!-- diagram:end -->``; it is replaced by ``fsm_live.diagram.render_docs_block``
of the page's spec.  ``tests/test_diagram.py`` fails when a block is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fsm_live.diagram import DOCS_BEGIN, DOCS_END, find_docs_block, render_docs_block
from fsm_live.spec import Spec

ROOT = Path(__file__).resolve().parent.parent
#: Page -> the spec its diagram is drawn from, both relative to the repository root.
PAGES = {"docs/lifecycle.md": "specs/connection.yaml"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a page's diagram is stale"
    )
    args = parser.parse_args()
    status = 0
    for page, spec_path in PAGES.items():
        text = (ROOT / page).read_text(encoding="utf-8")
        old = find_docs_block(text)
        if old is None:
            print(f"{page}: no {DOCS_BEGIN} ... {DOCS_END} block", file=sys.stderr)
            status = 1
            continue
        new = render_docs_block(Spec.from_path(ROOT / spec_path))
        if old == new:
            print(f"{page}: up to date")
        elif args.check:
            print(f"{page}: stale (run: python docs/update_diagrams.py)", file=sys.stderr)
            status = 1
        else:
            (ROOT / page).write_text(text.replace(old, new, 1), encoding="utf-8")
            print(f"{page}: updated from {spec_path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
