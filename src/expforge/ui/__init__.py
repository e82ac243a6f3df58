"""``expforge ui``: the experiment dashboard and its JSON API (FastAPI + uvicorn, every asset served locally)."""
