# What the scripts under scripts/ share (sourced, not run): messages and running a command as root.
# The sourcing script sets SCRIPT (its name, for messages) and ROOT_HINT (what to do when it needs
# root and has neither root nor sudo).

say() { printf '%s: %s\n' "$SCRIPT" "$*" >&2; }

die() {
  say "$*"
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "$ROOT_HINT"
  fi
}
