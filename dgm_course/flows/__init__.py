"""Normalizing flows of the lecture. ``forward``: x -> z with log|det df/dx|; ``inverse``: z -> x."""

from .base import *  # noqa: F401,F403
from .base import __all__ as _base
from .coupling import *  # noqa: F401,F403
from .coupling import __all__ as _coupling
from .elementwise import *  # noqa: F401,F403
from .elementwise import __all__ as _elementwise
from .glow import *  # noqa: F401,F403
from .glow import __all__ as _glow
from .linear import *  # noqa: F401,F403
from .linear import __all__ as _linear
from .residual import *  # noqa: F401,F403
from .residual import __all__ as _residual

__all__ = [*_base, *_elementwise, *_residual, *_coupling, *_linear, *_glow]
