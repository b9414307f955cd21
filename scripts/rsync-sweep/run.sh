#!/bin/bash
# The option sweep against rsync on a realistic tree (issue 18 session): every option set in
# OPTS (one per line; default: every *.txt here) in every role, each result compared with
# rsync's own — the trees (names, kinds, modes, owners, sizes, contents, mtimes; times set
# during the run compare as "recent") and the sorted stdout lines, and the exit codes.
#
#   scripts/rsync-sweep/run.sh [ARSYNC] [OPTS...]
#
# Roles: local, pull/push (arsync both ends over a plain remote shell), rpull/rpush (arsync
# speaking rsync's protocol to rsync), cserver/csender (the rsync client with arsync --server).
# Prints "ok ROLE OPTS" or "FAIL ROLE OPTS" with the differences; the work tree is
# $SWEEP_DIR (default /tmp/arsync-sweep).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
A=$(realpath "${1:-target/release/arsync}"); shift || true
W=${SWEEP_DIR:-/tmp/arsync-sweep}
mkdir -p "$W"
"$HERE/make-tree.sh" "$W"
printf '#!/bin/sh\nshift\nexec sh -c "exec $*"\n' > "$W/rsh"; chmod +x "$W/rsh"
lists=("$@"); [ ${#lists[@]} -gt 0 ] || lists=("$HERE"/*.txt)
for role in local pull push rpull rpush cserver csender; do
  for list in "${lists[@]}"; do
    while read -r line; do
      [ -n "$line" ] && ARSYNC="$A" W="$W" "$HERE/compare.sh" "$role" $line
    done < "$list"
  done
done
