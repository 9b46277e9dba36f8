"""kagflow: the Kaggle workflow of an LLM classifier fine-tuned with 4-bit QLoRA, automated."""

__version__ = "0.1.0"
