"""IML Studio's engine: In-Memory Learning (arXiv 2403.02757) without any Streamlit in it."""

__version__ = "0.1.0"
