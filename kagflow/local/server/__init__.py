"""The local Kaggle's server: HTTP, the API routes (api_*), its store, transfers and job queue."""
