"""Apps shipped with interp (installed as interp.apps): head_explorer.py is the Streamlit
head explorer that `interp explore` runs; from a checkout, `streamlit run apps/head_explorer.py`."""
