"""Face Lab backends: model code and method logic, free of any UI framework.

Every public entry point takes plain inputs (PIL images, numpy arrays, paths)
and returns plain data; failures are raised as the typed errors of
:mod:`backends.errors`, which the UI layer turns into user-facing messages.

Importing the package tunes how the process keeps freed CPU memory (:mod:`backends.allocator`).
"""

from . import allocator as _allocator

_allocator.tune()
