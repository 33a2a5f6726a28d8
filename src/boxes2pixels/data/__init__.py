"""Datasets: YOLO box datasets, mask files, training samples and synthetic data."""
