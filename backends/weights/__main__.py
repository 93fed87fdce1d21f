"""``python -m backends.weights``: see :mod:`.cli`."""

from .cli import main

raise SystemExit(main())
