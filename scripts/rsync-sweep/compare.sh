#!/bin/bash
# compare.sh ROLE OPTS... (with ARSYNC and W set; see run.sh): run rsync and arsync with the
# same options in one role over copies of W/old, compare the trees, stdout lines and exit codes.
A=$ARSYNC
HERE=$(cd "$(dirname "$0")" && pwd)
role=$1; shift
set -- "${@//@W@/$W}"
cd "$W"
rm -rf r a; cp -a old r; cp -a old a
case $role in
local) rsync "$@" src/ r/ > r.out 2> r.err; rc=$?; $A "$@" src/ a/ > a.out 2> a.err; ac=$? ;;
pull) rsync -e $W/rsh "$@" h:$W/src/ r/ > r.out 2> r.err; rc=$?; $A -e $W/rsh --rsync-path=$A "$@" h:$W/src/ a/ > a.out 2> a.err; ac=$? ;;
push) rsync -e $W/rsh "$@" src/ h:$W/r/ > r.out 2> r.err; rc=$?; $A -e $W/rsh --rsync-path=$A "$@" src/ h:$W/a/ > a.out 2> a.err; ac=$? ;;
rpull) rsync -e $W/rsh "$@" h:$W/src/ r/ > r.out 2> r.err; rc=$?; $A -e $W/rsh --rsync-path=rsync --protocol=rsync "$@" h:$W/src/ a/ > a.out 2> a.err; ac=$? ;;
rpush) rsync -e $W/rsh "$@" src/ h:$W/r/ > r.out 2> r.err; rc=$?; $A -e $W/rsh --rsync-path=rsync --protocol=rsync "$@" src/ h:$W/a/ > a.out 2> a.err; ac=$? ;;
cserver) rsync -e $W/rsh "$@" src/ h:$W/r/ > r.out 2> r.err; rc=$?; rsync -e $W/rsh --rsync-path=$A "$@" src/ h:$W/a/ > a.out 2> a.err; ac=$? ;;
csender) rsync -e $W/rsh "$@" h:$W/src/ r/ > r.out 2> r.err; rc=$?; rsync -e $W/rsh --rsync-path=$A "$@" h:$W/src/ a/ > a.out 2> a.err; ac=$? ;;
esac
st=ok
[ $rc = $ac ] || { st=FAIL; echo "  exit rsync=$rc arsync=$ac"; head -3 a.err; }
python3 "$HERE/snapshot.py" r a || st=FAIL
if ! diff <(grep -v '^created directory\|^sent \|^total size\|^$' r.out | sort) <(grep -v '^created directory\|^sent \|^total size\|^$' a.out | sort) > d.out; then st=FAIL; head -8 d.out; fi
echo "$st $role $*"
