"""Defaults of the operating curves and of the matched comparison's intervals.

One definition for `evaluate`, `sweep-p` and the demo; kept free of torch and numpy so that
``latent-seg --help`` can show them cheaply.
"""

MASK_THRESHOLDS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
"""Knob values of the baselines' curves: around the default 0.5 and far enough up that their
pickable area falls below the confidence masks' (where it does not, no match is made)."""

BOOTSTRAP_RESAMPLES = 2000
"""Paired-bootstrap draws per interval."""

BOOTSTRAP_CONFIDENCE = 0.95
"""Coverage of the intervals."""
