"""``python -m backends.reenactment``: the reenactment CLI (see :func:`backends.reenactment.common.main`);
with ``--pairs LIST.csv`` the list mode (:func:`backends.reenactment.pairs.main`), except after ``compare``
(every engine on every pair of the list, :func:`backends.reenactment.pairs.compare_main`)."""

import sys

if sys.argv[1:2] == ["compare"] and "--pairs" in sys.argv[2:]:
    from .pairs import compare_main

    raise SystemExit(compare_main(sys.argv[2:]))
if "--pairs" in sys.argv[1:]:
    from .pairs import main
else:
    from .common import main

raise SystemExit(main())
