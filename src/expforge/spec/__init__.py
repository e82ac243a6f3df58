"""The compiled-spec layer: what the local runner and ``expforge.cloud`` both need to know about a compiled
pipeline YAML, so neither borrows the other's internals.

* :mod:`.pipeline_file` — load a pipeline YAML strictly into kfp's own protobuf messages (one line per problem);
* :mod:`.graph_check` — the whole-graph checks (references, cycles) every loader runs;
* :mod:`.values` — type and coerce parameter values as the spec declares them;
* :mod:`.parameters` — a pipeline's declared inputs and the images it names, read leniently from any compiled
  spec (also one compiled by a newer kfp), for ``submit``.

* :mod:`.task_env_injection` — lay a task environment over every container's ``env`` (``compile --env``,
  ``submit``) and over the runner's own environment of a task (the spec wins), by one rule.

It sits above ``components`` and the step library and below the compiler (``pipelines``), ``local_runner``,
``cloud`` and ``ui``; it imports none of them.
"""
