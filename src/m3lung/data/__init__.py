"""Datasets and adapters: slices from volumes, cached features, public data set layouts."""
