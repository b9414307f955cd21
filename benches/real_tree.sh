#!/bin/bash
# A real tree synced over another through an sshd, each run on a fresh ext4 filesystem (issue 13):
#
#   benches/real_tree.sh OLD NEW HOST TOOL...
#
# OLD and NEW are directories (e.g. copies of two installed toolchains under ~/.rustup/toolchains),
# HOST an ssh destination that reaches this machine (e.g. a Host entry for a loopback sshd) with
# arsync and rsync on its PATH, TOOL any of: rsync rsync-pull ssh ssh-pool quic auto proto-push
# proto-pull (arsync speaking rsync's protocol). Needs root (loop mount). For each tool: a new
# 8 GiB ext4 image is made and mounted at /mnt/arsync-bench, OLD copied in, NEW synced over it
# with -a --delete, and the time, the machine's busy CPU, the bytes the loopback interface carried
# and the differences left (rsync -anc --delete) printed.
set -euo pipefail
old=$1 new=$2 host=$3; shift 3
mnt=/mnt/arsync-bench img=$(mktemp -u /tmp/arsync-bench.XXXXXX.img)
mkdir -p "$mnt"
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
for tool in "$@"; do
  umount "$mnt" 2>/dev/null || true
  truncate -s 8G "$img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
  mount -o loop "$img" "$mnt"
  cp -a "$old/." "$mnt/"; sync
  b0=$(cat /sys/class/net/lo/statistics/tx_bytes); c0=$(busy); t0=$(date +%s.%N)
  case $tool in
    rsync)      rsync -a --delete "$new/" "$host:$mnt/" ;;
    rsync-pull) rsync -a --delete "$host:$new/" "$mnt/" ;;
    proto-push) arsync -a --delete --protocol=rsync "$new/" "$host:$mnt/" ;;
    proto-pull) arsync -a --delete --protocol=rsync "$host:$new/" "$mnt/" ;;
    *)          arsync -a --delete --transport="$tool" "$new/" "$host:$mnt/" ;;
  esac
  t1=$(date +%s.%N); c1=$(busy); b1=$(cat /sys/class/net/lo/statistics/tx_bytes)
  left=$(rsync -anc --delete "$new/" "$mnt/" | { grep -v -e '^\./$' -e 'lost+found' || true; } | wc -l)
  printf '%-12s %7.2f s  %6.2f cpu-s  %6d MB on lo  %d differences\n' "$tool" \
    "$(echo "$t1 - $t0" | bc)" "$(echo "($c1 - $c0) / 100" | bc -l)" $(( (b1 - b0) / 1000000 )) "$left"
done
umount "$mnt"; rm -f "$img"
