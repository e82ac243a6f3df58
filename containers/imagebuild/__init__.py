"""The pieces of ``containers/build_images.py``, one job per module.

``common`` (paths, errors, hashing), ``recipes`` (reading ``containers/<name>/Dockerfile``), ``wheelhouse``
(the host-built wheels every image installs from), ``fonts`` (the font packages' files), ``plan`` (what each
image holds and its content hash; staging build contexts, nothing run) and ``dockercli`` (every ``docker``
call). ``build_images.py`` puts them together and is the command line.
"""
