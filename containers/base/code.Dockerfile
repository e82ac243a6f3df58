# The thin last layer of every step image: the project's own code on top of the step's dependency image.
#
# Why a layer of its own: dependencies change rarely, code changes all the time. build_images.py builds the
# recipe (containers/<step>/Dockerfile: parent + the wheels of the step's extra) as expforge/<step>:deps-<hash>,
# then this file on top of it. A source edit rebuilds only this layer: no pip, no container, one COPY.
# Context (staged by build_images.py): this file and code/ — the project wheel unpacked into the venv's
# site-packages, its console script and /app/kfp_config.ini — root-owned, so the runtime user cannot change
# the code. build_images.py then loads the component in the new image the way KFP's executor will
# (`docker run --network none`), so a missing module or dependency fails the build, not the first run.
ARG DEPS_IMAGE
FROM ${DEPS_IMAGE}
COPY --chown=0:0 code/ /
