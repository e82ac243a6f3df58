"""Datasets on disk: the shared ``labels.csv`` + ``images/`` layout and the steps that produce it."""
