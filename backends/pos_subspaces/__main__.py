"""``python -m backends.pos_subspaces``: see :mod:`.cli`."""

from .cli import main

raise SystemExit(main())
