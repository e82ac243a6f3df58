"""Pipelines: graphs of components, built by factories so the compiler can pin each task's image."""
