"""plaid: fine-tune language models to generate inorganic crystals and align them toward stable materials."""

__version__ = "0.1.0"
