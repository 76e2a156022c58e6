# The image a Prefect Docker worker runs the `lineage-pipeline` flow in. Build from the repository root:
#   docker build -f docker/worker.Dockerfile \
#     --build-arg GIT_REPOSITORY=https://github.com/ORG/retail-lineage --build-arg GIT_COMMIT="$(git rev-parse HEAD)" \
#     -t "$ECR_REGISTRY/retail-lineage-worker:$(git rev-parse HEAD)" .
# Credentials never enter the image: AWS and Prefect credentials, and IMAGE_URI, arrive at run time
# through the work pool's job variables (.dockerignore keeps .env files out of the build context).
# The packages are installed in a build stage, then copied: what trims them (binutils) stays out.
# The runtime locks only, hashes required: torch's CPU build from PyTorch's CPU index (named in its
# lock, looked up for torch alone), then everything else from PyPI. No test tools: those are in
# requirements/dev.lock. Left out (about 0.9 of 2.7 GB): bytecode (pip's --no-compile;
# PYTHONPYCACHEPREFIX below caches what a container imports, its first import of the stack about 8 s
# slower), the symbol tables of the three largest shared libraries (dynamic symbols stay; strip breaks
# the ones auditwheel patched, not these, and an import without bytecode proves it), the test suites
# of packages that never import them (evidently imports its own), and torch's C++ headers and test
# binaries (torch_shm_manager stays: `import torch` looks for it).
FROM python:3.11-slim-bookworm AS packages
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
# A virtualenv of its own, copied whole: the base's own packages (its setuptools) never mix in.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
COPY requirements/torch-cpu.lock requirements/runtime.lock ./requirements/
RUN pip install --no-cache-dir --no-compile --require-hashes --no-deps -r requirements/torch-cpu.lock \
    && pip install --no-cache-dir --no-compile --require-hashes --no-deps -r requirements/runtime.lock \
    && site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && for package in numpy pandas scipy sklearn statsmodels sympy numba networkx pyarrow matplotlib; do \
           if [ -d "$site/$package" ]; then find "$site/$package" -depth -type d -name tests -prune -exec rm -rf {} +; fi; \
       done \
    && rm -rf "$site/torch/include" "$site/torch/test" \
    && find "$site/torch/bin" -maxdepth 1 -type f \( -name 'test_*' -o -name '*Test' \) -delete \
    && strip --strip-unneeded "$site/torch/lib/libtorch_cpu.so" "$site/llvmlite/binding/libllvmlite.so" \
           "$site"/pyarrow/libarrow*.so.* \
    && python -B -c "import torch, llvmlite.binding, pyarrow.parquet, pyarrow.fs"

FROM python:3.11-slim-bookworm

# Logs reach the Prefect UI as they are written, not when a buffer fills. Bytecode is cached per container.
ENV PYTHONUNBUFFERED=1 \
    PYTHONPYCACHEPREFIX=/tmp/pycache \
    PATH=/opt/venv/bin:$PATH

# git for a `git_clone` pull step or a mounted checkout; the baked-in copy below runs DVC without it.
# openssh-client for ssh-keygen, which signs the pipeline's promotion decisions (lineage/signatures.py).
# Versions are not pinned: Debian replaces them with each security update, which would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin worker \
    && install -d -o worker -g worker /opt/pipeline
WORKDIR /opt/pipeline

# Dependencies first, in their own layer: it is rebuilt only when a lock changes.
COPY --from=packages /opt/venv /opt/venv

# The project itself; the lock already holds setuptools, so build without fetching it again. pip check
# fails the build if the locks miss anything the project or a dependency requires.
COPY --chown=worker:worker . .
# /tmp/pycache goes too: made here by root, the worker user could not write its bytecode there.
RUN pip install --no-cache-dir --no-compile --no-deps --no-build-isolation . \
    && pip check \
    && rm -rf build ./*.egg-info /tmp/pycache

# Numeric, so that runtimes checking "not root" (runAsNonRoot) can verify it without /etc/passwd.
USER 10001:10001

# The build context has no .git (see .dockerignore), and DVC refuses to run outside a git repository
# unless told not to use one. This writes .dvc/config.local in the image only; the checkout's own
# config.local is never copied in.
RUN dvc config --local core.no_scm true

# Last, so that a new commit does not invalidate the layers above. The lineage code reads the
# revision from the environment, since labels are not visible inside the container.
ARG GIT_REPOSITORY=""
ARG GIT_COMMIT=""
LABEL org.opencontainers.image.source="${GIT_REPOSITORY}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.title="retail-lineage worker"
ENV GIT_COMMIT="${GIT_COMMIT}" \
    IMAGE_REVISION="${GIT_COMMIT}"

# The same image serves predictions: `docker run -p 8080:8080 IMAGE retail-serve --host 0.0.0.0`, with
# LINEAGE_DB_URL and DVC_REMOTE_S3_URL in the environment (docs/serving.md: ECS and Lambda).
EXPOSE 8080

# Prefect's Docker worker passes the flow-run command as arguments; the entrypoint runs it.
ENTRYPOINT ["/opt/pipeline/docker/entrypoint.sh"]
CMD ["python", "-m", "flows.summary"]
