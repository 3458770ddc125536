#!/usr/bin/env bash
# Open WebUI for the relay benchmark's path through it, in the foreground until Ctrl-C:
#   services/dev/run-open-webui.sh [PORT]      (default 8090), then in another shell
#   duet bench relay --open-webui http://127.0.0.1:PORT
# Installs it first if needed (install-open-webui.sh: several GB, many minutes the first time).
#
# Started as the benchmark needs it: no sign-in (WEBUI_AUTH=False, which Open WebUI allows only
# on a data folder without accounts, so each start gets a fresh one), pointed at the dev Ollama
# (DUET_OLLAMA_URL), no OpenAI connection (it would ask api.openai.com for models), offline (no
# update check, no model downloads from a hub) and no embedding model loaded (nothing here
# retrieves documents). It writes its secret key into its working directory: the data folder.
set -euo pipefail

PORT="${1:-8090}"
OLLAMA_URL="${DUET_OLLAMA_URL:-http://127.0.0.1:11434}"
open_webui=$(bash "$(dirname "$0")/install-open-webui.sh" | tail -n 1)
data=$(mktemp -d "${TMPDIR:-/tmp}/duet-open-webui-XXXXXX")
cd "$data"
echo "Open WebUI on http://127.0.0.1:$PORT (auth off, data in $data), Ollama at $OLLAMA_URL" >&2
echo "it is up when http://127.0.0.1:$PORT/health answers (a minute or more)" >&2
exec env WEBUI_AUTH=False OLLAMA_BASE_URL="$OLLAMA_URL" ENABLE_OPENAI_API=False \
  OFFLINE_MODE=true BYPASS_EMBEDDING_AND_RETRIEVAL=true DATA_DIR="$data/data" \
  "$open_webui" serve --host 127.0.0.1 --port "$PORT"
