"""The only package that imports the official ``kaggle`` client."""
