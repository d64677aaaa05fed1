# sslcore lab as a container: the Gradio app on port 7860, run by a non-root user with uid 1000 -- the
# conventions of a Hugging Face Docker Space, and a sane default anywhere else.
#
#   docker build -t sslcore .                             CPU image (Keras on TensorFlow, measured fastest on CPU)
#   docker build --build-arg GPU=true -t sslcore-gpu .    adds jax[cuda12]: Keras on JAX on an NVIDIA GPU
#   docker run -p 7860:7860 sslcore                       then open http://127.0.0.1:7860
#   docker run --gpus all -p 7860:7860 sslcore-gpu
#
# KERAS_BACKEND (tensorflow, jax) overrides the backend sslcore picks; runs are written to $SSLCORE_RUNS.
FROM python:3.11-slim

ARG GPU=false

# Spaces run the container as uid 1000; files the app writes (runs, caches) must belong to that user.
RUN useradd --create-home --uid 1000 user
USER 1000
ENV HOME=/home/user
ENV VIRTUAL_ENV=$HOME/venv \
    PATH=$HOME/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR $HOME/app

# Dependencies first, in their own layer: editing the code does not reinstall TensorFlow.
RUN python -m venv "$VIRTUAL_ENV"
COPY --chown=user requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \
    && if [ "$GPU" = "true" ]; then pip install --no-cache-dir "jax[cuda12]==0.10.2"; fi

COPY --chown=user . .

ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    SSLCORE_RUNS=$HOME/app/runs
EXPOSE 7860
CMD ["python", "app.py"]
