"""Kaggle's facts, pure: naming rules, metadata files, the target image."""
