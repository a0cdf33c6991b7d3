#!/usr/bin/env bash
# Create whatever is missing for `make run` / `make test`; a second run does nothing.
#   .venv       the app on Python 3.11 (pinned by constraints.txt)
#   .venv-rasa  rasa 3.6.21 on Python 3.10 (pinned by constraints-rasa.txt)
#   models/     the trained Rasa model, rebuilt only when nlu/ changes
#   var/asterisk-root  Asterisk 22 in a Debian sid root (debootstrap; root only)
# System packages (PostgreSQL, Chromium, SIPp, espeak-ng, sox, debootstrap, Kannel, and
# Dovecot with IMAP and LMTP for the embedded mail system) are installed
# with apt when missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\033[1m[setup %s]\033[0m %s\n' "$1" "$2"; }
die() { printf '\033[31m[setup] %s\033[0m\n' "$*" >&2; exit 1; }
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

want_system=(postgresql chromium sip-tester debootstrap espeak-ng libespeak-ng1 sox kannel kannel-extras
  dovecot-imapd dovecot-lmtpd)
missing=()
for pkg in "${want_system[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    step 0/3 "installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; }
  else
    echo "[setup] note: system packages missing: ${missing[*]} (tests need them; run .ci/run as root or install them)" >&2
  fi
fi

find_python311() {
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
      command -v "$cand"; return 0
    fi
  done
  return 1
}

find_python310() {
  if command -v pyenv >/dev/null; then
    local prefix
    prefix=$(pyenv prefix 3.10.13 2>/dev/null || pyenv prefix 3.10 2>/dev/null || true)
    [[ -n $prefix && -x $prefix/bin/python ]] && { echo "$prefix/bin/python"; return 0; }
  fi
  command -v python3.10 >/dev/null && { command -v python3.10; return 0; }
  if command -v uv >/dev/null; then
    uv python find 3.10 2>/dev/null && return 0
  fi
  return 1
}

app_stamp=$(stamp_of pyproject.toml constraints.txt)
if [[ ! -f .venv/.stamp-$app_stamp ]]; then
  py=$(find_python311) || die "Python 3.11 or newer is needed for .venv; install python3.11 and retry."
  step 1/3 "app environment .venv with $($py --version)"
  [[ -x .venv/bin/python ]] || "$py" -m venv .venv
  .venv/bin/python -m pip install --progress-bar on -q --upgrade pip
  .venv/bin/python -m pip install --progress-bar on -c constraints.txt -e '.[dev]'
  rm -f .venv/.stamp-*; touch ".venv/.stamp-$app_stamp"
else
  step 1/3 ".venv is up to date"
fi

rasa_stamp=$(stamp_of constraints-rasa.txt)
if [[ ! -f .venv-rasa/.stamp-$rasa_stamp ]]; then
  py=$(find_python310) || die "Rasa 3.6 needs Python 3.10, and none was found.
  Looked for: pyenv 3.10.x, python3.10 on PATH, 'uv python find 3.10'.
  Fix: 'pyenv install 3.10.13', or 'uv python install 3.10', or install python3.10."
  step 2/3 "Rasa environment .venv-rasa with $($py --version) (about 90 s, 2.7 GB)"
  [[ -x .venv-rasa/bin/python ]] || "$py" -m venv .venv-rasa
  .venv-rasa/bin/python -m pip install -q --upgrade pip
  .venv-rasa/bin/python -m pip install --progress-bar on -c constraints-rasa.txt 'rasa[jieba]==3.6.21'
  rm -f .venv-rasa/.stamp-*; touch ".venv-rasa/.stamp-$rasa_stamp"
else
  step 2/3 ".venv-rasa is up to date"
fi

step 3/3 "Rasa model (trained only when nlu/ changed)"
.venv/bin/hotline train

# Voice: Asterisk lives in its own Debian sid root (reused once built). Without root
# or network the hub still runs, with voice off; the message says why.
if [[ $(id -u) == 0 ]]; then
  asterisk/provision.sh "${HOTLINE_ASTERISK_ROOT:-var/asterisk-root}" \
    || echo "[setup] note: the Asterisk root could not be built; voice is off" >&2
else
  echo "[setup] note: not root, so no Asterisk root is built here; voice is off" >&2
fi
