#!/usr/bin/env bash
# Checks a .deb built by deploy/build-deb.sh: its control fields, that it
# holds the binary, the unit, the tmpfiles and sysusers entries, the man pages
# and the completions in their Debian places, and that they work once
# unpacked and installed (into a scratch directory: nothing is installed on
# this machine; on one running systemd the postinst's daemon-reload does run,
# and fails harmlessly without root).
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
# Installed and purged by dpkg in a scratch root of its own: the maintainer
# scripts run (outside a chroot, with DPKG_ROOT set, as dpkg does for image
# builds) and the postinst must make the service's user.
inst="$root/inst"
mkdir -p "$inst/var/lib/dpkg/info" "$inst/var/lib/dpkg/updates" "$inst/etc"
touch "$inst/var/lib/dpkg/status" "$inst/var/lib/dpkg/available"
dpkg_in() { dpkg --root="$inst" --log=/dev/null --force-script-chrootless --force-depends --force-not-root "$@"; }
dpkg_in -i "$deb" >/dev/null 2>"$root/dpkg.err" || fail "dpkg -i failed: $(cat "$root/dpkg.err")"
grep -q "^gpusel:x:" "$inst/etc/passwd" || fail "installing made no gpusel user (the postinst's systemd-sysusers)"
[ -x "$inst/usr/bin/gpusel" ] || fail "installing put no /usr/bin/gpusel"
dpkg_in --purge gpusel >/dev/null 2>"$root/dpkg.err" || fail "dpkg --purge failed: $(cat "$root/dpkg.err")"
[ ! -e "$inst/usr/bin/gpusel" ] && [ ! -e "$inst/etc/default/gpusel-serve" ] \
  || fail "purging left /usr/bin/gpusel or /etc/default/gpusel-serve behind"
# The site lock directory, as at boot.
systemd-tmpfiles --root="$root" --create gpusel.conf
[ "$(stat -c %a "$root/run/lock/gpusel")" = 1777 ] || fail "tmpfiles.d/gpusel.conf does not make /run/lock/gpusel mode 1777"
echo "check-deb.sh: $deb ($(stat -c %s "$deb") bytes): control fields, $(wc -l <<<"$contents") entries, the unpacked binary, completion and man page, install and purge (the user), the lock directory: all good"
