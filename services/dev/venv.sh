# Sourced by the install scripts that put an engine in a virtualenv of its own, outside the clone.

# venv_is_complete VENV: did an install into VENV run to its end? (venv_mark_complete is its
# last step, so a venv left half-built by an interrupted install is built again from scratch.)
venv_is_complete() {
  [ -x "$1/bin/python" ] && [ -f "$1/.duet-complete" ]
}

# venv_create VENV PYTHON: a new, empty VENV made by PYTHON, with a current pip.
venv_create() {
  rm -rf "$1"
  mkdir -p "$(dirname "$1")"
  "$2" -m venv "$1"
  "$1/bin/python" -m pip --disable-pip-version-check -q install --upgrade pip packaging
}

venv_mark_complete() {
  touch "$1/.duet-complete"
}
