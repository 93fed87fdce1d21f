"""``python -m backends.reenactment``: the reenactment CLI (see :func:`backends.reenactment.common.main`);
with ``--pairs LIST.csv`` the list mode (:func:`backends.reenactment.pairs.main`)."""

import sys

if "--pairs" in sys.argv[1:]:
    from .pairs import main
else:
    from .common import main

raise SystemExit(main())
