"""Detection: features, detectors, models, alerts and evaluation (pure functions over DataFrames)."""
