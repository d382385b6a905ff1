"""dposer-view's headless library: the DPoser prior, its tasks, body models and data IO.

Never imports viser. Public entry points::

    from prior import load_prior, load_body_model
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["load_prior", "load_body_model", "InputError", "Cancelled"]

from .errors import Cancelled, InputError

if TYPE_CHECKING:
    from .body import load_body_model
    from .checkpoint import load_prior


def __getattr__(name: str) -> Any:
    # Lazy so that `import prior` stays cheap (the CLI prints --help without loading torch models).
    if name == "load_prior":
        from .checkpoint import load_prior

        return load_prior
    if name == "load_body_model":
        from .body import load_body_model

        return load_body_model
    raise AttributeError(f"module 'prior' has no attribute {name!r}")
