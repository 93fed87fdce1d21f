"""``python -m backends.anonymization``: see :mod:`.cli`."""

from .cli import main

raise SystemExit(main())
