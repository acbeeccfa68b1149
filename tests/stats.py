"""Statistics the tests share."""

import math


def chi2_critical(dof: int) -> float:
    """The 0.999 quantile of chi-square (Wilson-Hilferty), for a test that fails by chance once in 1,000.

    >>> round(chi2_critical(1), 1)
    11.2
    """
    if dof <= 0:
        return math.inf
    z = 3.09
    return float(dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3)
