"""KFP components: thin adapters that map KFP artifacts and parameters onto the step library.

Each component runs in its own image (``containers/<step>/Dockerfile``); see ``_adapter`` for the one place
the adapter pattern is written.
"""
