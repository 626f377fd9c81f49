"""vadbench: reproducible memory-augmented video anomaly detection, end to end.

The package holds the real work (dataset layouts, models, training, scoring, metrics,
tracking); the Snakemake workflow under ``workflow/`` only wires it together.
"""

__version__ = "0.1.0"
