"""``python -m backends.expression``: see :mod:`.cli`."""

from .cli import main

raise SystemExit(main())
