#!/bin/sh
# Create Duet's model in Ollama from a generated Modelfile; run once the server is healthy.
#
# Runs in the official ollama/ollama image, which has no curl: the `ollama` binary is the client,
# pointed at the server by OLLAMA_HOST (http://ollama:11434 in docker-compose.yml).
#
# Idempotent: the base weights are pulled only when the server lacks them, and `ollama create`
# with an unchanged Modelfile rebuilds the same model from blobs it already has, so running the
# job again costs seconds. A changed Modelfile takes effect on the next run.
set -eu

: "${OLLAMA_HOST:?set OLLAMA_HOST to the Ollama server, e.g. http://ollama:11434}"
: "${OLLAMA_MODEL:?set OLLAMA_MODEL to the name to create, e.g. qwen3-duet}"
: "${OLLAMA_MODELFILE:?set OLLAMA_MODELFILE to the Modelfile path, e.g. /modelfiles/qwen3-14b.Modelfile}"

if [ ! -f "$OLLAMA_MODELFILE" ]; then
  echo "ollama-init: no Modelfile at $OLLAMA_MODELFILE; available:" >&2
  ls /modelfiles >&2 || true
  exit 1
fi

# The first FROM line names the base model.
source=$(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]\{1,\}\).*/\1/p' "$OLLAMA_MODELFILE" | head -n 1)
if [ -z "$source" ]; then
  echo "ollama-init: $OLLAMA_MODELFILE has no FROM line" >&2
  exit 1
fi

case "$source" in
  /* | ./* | ../* | *.gguf)
    # A local file: `ollama create` uploads it from here, relative to the Modelfile.
    echo "ollama-init: base is a local file ($source)"
    ;;
  *)
    if ollama show "$source" >/dev/null 2>&1; then
      echo "ollama-init: $source already present"
    else
      echo "ollama-init: pulling $source (first time: several GB)"
      ollama pull "$source"
    fi
    ;;
esac

echo "ollama-init: creating $OLLAMA_MODEL from $OLLAMA_MODELFILE"
ollama create "$OLLAMA_MODEL" -f "$OLLAMA_MODELFILE"
ollama show "$OLLAMA_MODEL" >/dev/null
echo "ollama-init: $OLLAMA_MODEL is ready"
