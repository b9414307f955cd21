#!/bin/bash
# Fresh small files over a remote shell, arsync ↔ arsync against rsync ↔ rsync (issue 18):
#
#   benches/small_files.sh DIRS FILES ROUNDS [pull|push] [TOOL...]
#
# Makes DIRS × FILES files of 100 random bytes (kept in /tmp/arsync-small-DIRSxFILES for later
# runs) and copies the tree with -a into an empty destination, once per TOOL per round, the order
# of the tools rotated each round. TOOL is `rsync` or an arsync binary's path (default: `arsync`
# on PATH, then rsync); two arsync binaries compare a change with what it replaces. The remote
# shell is $RSH (default: a local one that drops the host and runs the command here, as the
# remote-shell benches do; give an `ssh …` command line for a real sshd), the host $HOST
# (default `host`); both tools get the same one, each arsync its own binary as --rsync-path.
# Needs root: every run writes to a new 8 GiB ext4 filesystem (a loop file on /tmp) mounted at
# /mnt/arsync-small, so that no run pays for another's deletions or dirty pages, and what a busy
# /tmp shares with other work does not enter. Prints wall time and user/system CPU of the client
# (the remote side included, as its child) and checks the file count.
set -euo pipefail
dirs=$1 files=$2 rounds=$3 way=${4:-pull}; shift 4 || shift $#
tools=("$@"); [ ${#tools[@]} -gt 0 ] || tools=("$(command -v arsync)" rsync)
rsh=${RSH:-} host=${HOST:-host} made_rsh=
src=/tmp/arsync-small-${dirs}x$files mnt=/mnt/arsync-small img=$(mktemp -u /tmp/arsync-small.XXXXXX.img)
if [ -z "$rsh" ]; then
  rsh=$(mktemp /tmp/arsync-small-rsh.XXXXXX) made_rsh=$rsh
  printf '#!/bin/sh\nwhile [ "$1" = -l ] || [ "$1" = -p ]; do shift 2; done\nshift\nexec sh -c "$*"\n' >"$rsh"
  chmod +x "$rsh"
fi
if [ ! -d "$src" ]; then
  python3 - "$src" "$dirs" "$files" <<'EOF'
import os, sys
root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(dirs):
    p = f"{root}.part/d{d:04}"
    os.makedirs(p)
    for f in range(files):
        with open(f"{p}/f{f:05}", "wb") as fh:
            fh.write(os.urandom(100))
os.rename(root + ".part", root)
EOF
fi
want=$(find "$src" -type f | wc -l)
mkdir -p "$mnt"
trap 'umount "$mnt" 2>/dev/null || true; rm -f "$img" $made_rsh' EXIT
for round in $(seq "$rounds"); do
  for k in "${!tools[@]}"; do
    tool=${tools[$(( (round + k) % ${#tools[@]} ))]}
    umount "$mnt" 2>/dev/null || true
    rm -f "$img"; truncate -s 8G "$img"
    mkfs.ext4 -q -F "$img"; mount -o loop "$img" "$mnt"; sync
    if [ "$way" = pull ]; then from="$host:$src/" to="$mnt/dst/"; else from="$src/" to="$host:$mnt/dst/"; fi
    if [ "$tool" = rsync ]; then cmd=(rsync -a -e "$rsh" "$from" "$to")
    else cmd=("$tool" -a -e "$rsh" --rsync-path="$tool" "$from" "$to"); fi
    /usr/bin/time -f "$way round $round  %e s  user %U s  sys %S s  $tool" "${cmd[@]}"
    got=$(find "$mnt/dst" -type f | wc -l)
    [ "$got" = "$want" ] || { echo "$tool copied $got of $want files" >&2; exit 1; }
  done
  echo "  load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
