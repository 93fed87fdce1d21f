"""``python -m backends.latent_paths``: see :mod:`.cli`."""

from .cli import main

raise SystemExit(main())
