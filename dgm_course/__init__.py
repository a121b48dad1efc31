"""dgm-course: the reference library of a Deep Generative Models course on normalizing flows and VAEs.

Convention: ``x`` is data, ``z`` is noise; ``f: x -> z`` normalizes and ``g = f^-1: z -> x`` generates.
"""

__version__ = "0.1.0"
