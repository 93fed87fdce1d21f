"""``python -m backends.reenactment``: the reenactment CLI (see :func:`backends.reenactment.common.main`)."""

from .common import main

raise SystemExit(main())
