"""XQDA against scikit-learn's own estimator checks (``parametrize_with_checks``).

Every check passes: the ten that failed before were input-validation messages and an object
array of numbers, all fixed in ``classical.xqda._check_features`` (its own checks, not
``check_array``, so that a memmap is read block by block instead of copied whole). A deliberate
deviation would be listed in ``DEVIATIONS`` with its reason and run as an expected failure.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from classical.xqda import XQDA

#: check name -> why XQDA deliberately differs (none at present).
DEVIATIONS: dict[str, str] = {}


def _expected_failures(estimator) -> dict[str, str]:
    return DEVIATIONS


@parametrize_with_checks([XQDA()], expected_failed_checks=_expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
