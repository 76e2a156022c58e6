# The image a Prefect Docker worker runs the `lineage-pipeline` flow in. Build from the repository root:
#   docker build -f docker/worker.Dockerfile \
#     --build-arg GIT_REPOSITORY=https://github.com/ORG/retail-lineage --build-arg GIT_COMMIT="$(git rev-parse HEAD)" \
#     -t "$ECR_REGISTRY/retail-lineage-worker:$(git rev-parse HEAD)" .
# Credentials never enter the image: AWS and Prefect credentials, and IMAGE_URI, arrive at run time
# through the work pool's job variables (.dockerignore keeps .env files out of the build context).
FROM python:3.11-slim-bookworm

# Logs reach the Prefect UI as they are written, not when a buffer fills.
ENV PYTHONUNBUFFERED=1

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

# Dependencies first, in their own layer: it is rebuilt only when a lock changes. The runtime locks
# only, hashes required: torch's CPU build from PyTorch's CPU index (named in its lock, looked up for
# torch alone), then everything else from PyPI. No test tools: those are in requirements/dev.lock.
COPY requirements/torch-cpu.lock requirements/runtime.lock ./requirements/
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/torch-cpu.lock \
    && pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.lock

# The project itself; the lock already holds setuptools, so build without fetching it again. pip check
# fails the build if the locks miss anything the project or a dependency requires.
COPY --chown=worker:worker . .
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip check \
    && rm -rf build ./*.egg-info

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
