"""``python -m backends.reenactment``: the reenactment CLI (see :func:`backends.reenactment.common.main`);
with ``--pairs LIST.csv`` the list mode (:func:`backends.reenactment.pairs.main`), except after ``compare``
(every engine on every pair of the list, :func:`backends.reenactment.pairs.compare_pairs`)."""

import sys

if "--pairs" in sys.argv[1:] and sys.argv[1:2] != ["compare"]:
    from .pairs import main
else:
    from .common import main

raise SystemExit(main())
