#!/usr/bin/env bash
# Checks a .deb built by deploy/build-deb.sh: its control fields, that it
# holds the binary, the unit, the tmpfiles and sysusers entries, the man pages
# and the completions in their Debian places, and that they work once
# unpacked (into a scratch directory: nothing is installed on this machine).
# Usage: deploy/check-deb.sh target/debian/gpusel_VERSION-1_ARCH.deb
set -euo pipefail
deb="${1:?usage: deploy/check-deb.sh PATH.deb (the path deploy/build-deb.sh prints last)}"
fail() { echo "check-deb.sh: $deb: $*" >&2; exit 1; }

info="$(dpkg-deb -I "$deb")"
for field in "Package: gpusel" "Section: utils" "Depends: .*systemd | systemd-standalone-sysusers"; do
  grep -Eq "^ $field" <<<"$info" || fail "no control field matching '$field' in dpkg-deb -I:"$'\n'"$info"
done
# cargo-deb's part of the postinst (#DEBHELPER#): the service's user.
grep -q "systemd-sysusers" <<<"$(dpkg-deb -I "$deb" postinst)" || fail "the postinst does not run systemd-sysusers"

contents="$(dpkg-deb -c "$deb" | awk '{print $6}')"
for path in \
  ./usr/bin/gpusel \
  ./usr/lib/systemd/system/gpusel-serve.service \
  ./usr/lib/tmpfiles.d/gpusel.conf \
  ./usr/lib/sysusers.d/gpusel.conf \
  ./etc/default/gpusel-serve \
  ./usr/share/man/man1/gpusel.1.gz \
  ./usr/share/man/man1/gpusel-serve.1.gz \
  ./usr/share/bash-completion/completions/gpusel \
  ./usr/share/zsh/vendor-completions/_gpusel \
  ./usr/share/fish/vendor_completions.d/gpusel.fish \
  ./usr/share/gpusel/grafana/gpusel.json \
  ./usr/share/gpusel/prometheus/gpusel-rules.yml; do
  grep -qxF "$path" <<<"$contents" || fail "lacks $path; it holds:"$'\n'"$contents"
done
grep -qx "/etc/default/gpusel-serve" <<<"$(dpkg-deb -I "$deb" conffiles)" \
  || fail "/etc/default/gpusel-serve is not a conffile (an upgrade would overwrite the admin's settings)"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/gpusel" --version | grep -q "^gpusel " || fail "the packaged gpusel does not run"
bash -n "$root/usr/share/bash-completion/completions/gpusel" || fail "the bash completion is not valid bash"
MANWIDTH=80 man -l "$root/usr/share/man/man1/gpusel.1.gz" | grep -q "^SYNOPSIS" || fail "gpusel.1.gz does not render"
# What the postinst does, into the scratch root.
mkdir -p "$root/etc"
systemd-sysusers --root="$root" gpusel.conf
grep -q "^gpusel:x:" "$root/etc/passwd" || fail "systemd-sysusers made no gpusel user from sysusers.d/gpusel.conf"
systemd-tmpfiles --root="$root" --create gpusel.conf
[ "$(stat -c %a "$root/run/lock/gpusel")" = 1777 ] || fail "tmpfiles.d/gpusel.conf does not make /run/lock/gpusel mode 1777"
echo "check-deb.sh: $deb ($(stat -c %s "$deb") bytes): control fields, $(wc -l <<<"$contents") entries, unpacked binary, completion, man page, user and lock directory all good"
