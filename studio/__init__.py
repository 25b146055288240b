"""Dashboard helpers shared by app.py and pages/: Streamlit lives here and in pages, never in iml_core."""
