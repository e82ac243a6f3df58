"""The local runner: executes a compiled pipeline spec YAML with Docker (the same images) or subprocesses."""
