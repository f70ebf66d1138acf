#!/usr/bin/env bash
# Debian packages the toolkit and its tests use: real recorded speech (asterisk prompts; Fish Fillets NG's acted
# Czech dialogue), ffmpeg (audio formats libsndfile cannot read), TTS engines and voices, translated sentences
# (gnome-user-docs) and sox for the offline corpus. Installs only what is missing; needs root (or sudo) and apt-get.
set -euo pipefail
PACKAGES=(ffmpeg sox asterisk-core-sounds-en asterisk-core-sounds-en-wav asterisk-core-sounds-es asterisk-core-sounds-es-wav
  asterisk-core-sounds-fr asterisk-core-sounds-fr-wav asterisk-core-sounds-it asterisk-core-sounds-it-wav
  asterisk-core-sounds-ru asterisk-core-sounds-ru-wav
  festival festvox-ca-ona-hts festvox-czech-dita festvox-czech-machac festvox-czech-ph festvox-czech-krb
  espeak-ng gnome-user-docs fillets-ng-data fillets-ng-data-cs)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install these packages with your system's package manager: ${missing[*]}" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
