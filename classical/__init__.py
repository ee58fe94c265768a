"""Classical re-ID pipeline: LOMO features (numba), MSRCR Retinex and the XQDA metric.

``classical.lomo.lomo`` / ``LOMO`` describe RGB uint8 images (26,960-d at 128x48; the default
parameters live in ``classical.lomo.DEFAULTS``), ``XQDA`` (a scikit-learn estimator) learns a
projection and metric from labelled features and ``XQDAMatcher`` ranks a projected gallery with
that metric, ``msrcr`` is the Retinex pre-processing of LOMO's colour branch;
``python -m classical.pipeline`` runs LOMO + XQDA end to end (``make lomo-xqda``). (The ``lomo``
function is not re-exported here: the name belongs to the ``classical.lomo`` module.)
"""

import data  # noqa: F401  (first: it sets the OpenMP wait policy before numba loads)
from classical.lomo import LOMO
from classical.retinex import msrcr
from classical.xqda import XQDA, XQDAMatcher

__all__ = ["LOMO", "XQDA", "XQDAMatcher", "msrcr"]
