#!/bin/sh
# Incremental recursion when arsync sends (docs/BENCHMARKS.md, "Incremental recursion"):
# 100,200 files of 100 bytes in 300 directories, pushed to `rsync --server` and pulled by an
# rsync client from `arsync --server --sender`, each next to rsync doing the same, through a
# remote shell that drops the host and runs the command here. Fresh destination each run.
#
#   scripts/bench-increc.sh [ARSYNC] [DIR]
#
# ARSYNC defaults to target/release/arsync, DIR (removed at the end) to target/bench-increc.
set -eu
ARSYNC=$(realpath "${1:-target/release/arsync}")
DIR=${2:-target/bench-increc}
RSYNC=${RSYNC:-/usr/bin/rsync}
mkdir -p "$DIR"
DIR=$(realpath "$DIR")
trap 'rm -rf "$DIR"' EXIT
cat > "$DIR/rsh.sh" <<'SH'
#!/bin/sh
shift
exec "$@"
SH
chmod +x "$DIR/rsh.sh"
if [ ! -d "$DIR/src" ]; then
    python3 - "$DIR/src" <<'PY'
import os, sys
root = sys.argv[1]
body = b"x" * 100
for d in range(300):
    p = os.path.join(root, "d%03d" % d)
    os.makedirs(p)
    for f in range(334):
        with open(os.path.join(p, "f%03d" % f), "wb") as fh:
            fh.write(body)
PY
fi
echo "tree: $(find "$DIR/src" -type f | wc -l) files, $(find "$DIR/src" -mindepth 1 -type d | wc -l) directories"
run() {
    label=$1
    shift
    rm -rf "$DIR/dst"
    sync
    /usr/bin/time -f "$label: %e s elapsed, %U s user, %S s system (client)" "$@" >/dev/null
    test "$(find "$DIR/dst" -type f | wc -l)" -eq 100200
}
cd "$DIR"
run "arsync push to rsync --server" "$ARSYNC" -a --protocol=rsync -e ./rsh.sh src/ h:"$DIR"/dst/
run "rsync push to rsync --server" "$RSYNC" -a -e ./rsh.sh src/ h:"$DIR"/dst/
run "rsync --no-i-r push to rsync --server" "$RSYNC" -a --no-i-r -e ./rsh.sh src/ h:"$DIR"/dst/
run "rsync pull from arsync --server --sender" "$RSYNC" -a -e ./rsh.sh --rsync-path="$ARSYNC" h:"$DIR"/src/ dst/
run "rsync pull from rsync --server --sender" "$RSYNC" -a -e ./rsh.sh h:"$DIR"/src/ dst/
