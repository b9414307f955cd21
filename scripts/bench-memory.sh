#!/bin/sh
# Peak memory against the tree's size (docs/BENCHMARKS.md, "Memory with the tree's size"):
# NDIRS directories of 1,000 files of 100 bytes, copied into a fresh destination locally,
# pulled and pushed through a remote shell that drops the host and runs the command here.
# Each arsync process's peak RSS is its VmHWM, polled every 20 ms until it exits (wait4's
# ru_maxrss would fold the remote side into the client, which waits for it); rsync's is
# /usr/bin/time's, the largest of its processes.
#
#   scripts/bench-memory.sh [ARSYNC] [NDIRS] [DIR]
#
# ARSYNC defaults to target/release/arsync, NDIRS to 100 (100,000 files), DIR (kept: the
# tree takes a while to make) to target/bench-memory.
set -eu
ARSYNC=$(realpath "${1:-target/release/arsync}")
NDIRS=${2:-100}
DIR=${3:-target/bench-memory}
mkdir -p "$DIR"
DIR=$(realpath "$DIR")
T="$DIR/t$NDIRS"
D="$DIR/dst"
cat > "$DIR/hwm.py" <<'PY'
import subprocess, sys, time
# hwm.py OUT CMD...: run CMD, poll its VmHWM (KiB), write "PEAK SECONDS" to OUT.
out, p, peak, t0 = sys.argv[1], subprocess.Popen(sys.argv[2:]), 0, time.time()
while p.poll() is None:
    try:
        for line in open("/proc/%d/status" % p.pid):
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.02)
open(out, "w").write("%d %.1f\n" % (peak, time.time() - t0))
sys.exit(p.returncode)
PY
cat > "$DIR/rsh" <<SH
#!/bin/sh
shift
exec python3 "$DIR/hwm.py" "$DIR/server" sh -c "exec \$*"
SH
cat > "$DIR/rsh-plain" <<'SH'
#!/bin/sh
shift
exec sh -c "exec $*"
SH
chmod +x "$DIR/rsh" "$DIR/rsh-plain"
if [ ! -d "$T" ]; then
    python3 - "$T" "$NDIRS" <<'PY'
import os, sys
for d in range(int(sys.argv[2])):
    p = os.path.join(sys.argv[1], "d%04d" % d)
    os.makedirs(p)
    for f in range(1000):
        with open(os.path.join(p, "f%05d" % f), "wb") as fh:
            fh.write(b"x" * 100)
PY
fi
H="python3 $DIR/hwm.py $DIR/client"
rm -rf "$D"; $H "$ARSYNC" -a "$T/" "$D/"; echo "arsync local: $(cat "$DIR/client")"
rm -rf "$D"; $H "$ARSYNC" -a -e "$DIR/rsh" --rsync-path="$ARSYNC" "h:$T/" "$D/"
echo "arsync pull: client $(cat "$DIR/client") server $(cat "$DIR/server")"
rm -rf "$D"; $H "$ARSYNC" -a -e "$DIR/rsh" --rsync-path="$ARSYNC" "$T/" "h:$D/"
echo "arsync push: client $(cat "$DIR/client") server $(cat "$DIR/server")"
for run in local pull push; do
    rm -rf "$D"
    case $run in
    local) set -- "$T/" "$D/" ;;
    pull) set -- -e "$DIR/rsh-plain" "h:$T/" "$D/" ;;
    push) set -- -e "$DIR/rsh-plain" "$T/" "h:$D/" ;;
    esac
    echo "rsync $run: $( { /usr/bin/time -f '%M %e' rsync -a "$@" >/dev/null; } 2>&1 | tail -1)"
done
rm -rf "$D"
