#!/bin/bash
# make-tree.sh DIR: a messy source (DIR/src: python packages and docs from this machine, edited,
# renamed to hash-suffixed names, new deep files, symlinks, hard links, kind changes, modes)
# and an older destination (DIR/old: extraneous, same-size edits, newer files, a file where a
# directory goes); DIR/base is the untouched copy (for --link-dest and friends).
set -e
cd "$1"
rm -rf base src old
mkdir -p base
cp -a /usr/lib/python3.11/email /usr/lib/python3.11/json /usr/lib/python3.11/asyncio /usr/share/doc/tar /usr/share/doc/rsync base/ 2>/dev/null || true
cp -a base src
cp -a base old
# source changes: edits, appends, renames, new files, mode changes, symlinks, hash-suffixed names
for f in $(find src -name '*.py' | sort | head -40); do echo "# edit" >> $f; done
for f in $(find src -name '*.py' | sort | sed -n 41,60p); do mv $f ${f%.py}.a1b2c3d4.py; done
mkdir -p src/new/deep/er/still
for i in $(seq 1 50); do head -c $((i*97)) /dev/urandom > src/new/deep/er/f$i.bin; done
ln -s ../json src/new/jlink
ln -s nowhere src/new/dangling
chmod 600 $(find src -name '*.py' | sort | sed -n 61,70p)
chmod 750 src/json
# old side: extraneous, changed content same size, newer files, dir-vs-file conflicts
mkdir -p old/gone/a; echo x > old/gone/a/b
for f in $(find old -name '*.py' | sort | sed -n 71,80p); do printf 'X' | dd of=$f bs=1 seek=10 conv=notrunc 2>/dev/null; done
for f in $(find old -name '*.py' | sort | sed -n 81,85p); do touch -d '2030-01-01' $f; done
rm -rf old/email/mime; echo notadir > old/email/mime
touch -d '2001-01-01' old/json
# hard links and kind changes
ln src/new/deep/er/f1.bin src/new/hl1
ln src/new/deep/er/f1.bin src/json/hl2
rm -f src/json/tool.py; ln -s encoder.py src/json/tool.py
mkdir -p src/asyncio/__pycache__/x; echo y > src/asyncio/__pycache__/x/y
mkdir -p old/bk; echo old > old/bk/keep
