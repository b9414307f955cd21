#!/usr/bin/env python3
"""List rsync's options (from `rsync --help`) with arsync's status, as rows of the table in
docs/RSYNC_COMPATIBILITY.md: `yes` when arsync's option table has it and a test
(tests/**/*.rs, most against rsync) uses it, `accepted` when the table has it but no test does, `no`
otherwise. Run from the repository root; prints the rows (the notes column is kept by hand)."""
import glob, re, subprocess, sys

arsync = sys.argv[1] if len(sys.argv) > 1 else "target/debug/arsync"
rsync_help = subprocess.run(["rsync", "--help"], capture_output=True, text=True).stdout
ours = subprocess.run([arsync, "--help"], capture_output=True, text=True).stdout
tests = "".join(open(p).read() for p in glob.glob("tests/**/*.rs", recursive=True))
# Letters in short-option clusters the tests pass ("-aHi", "-rlt"); -a stands for -rlptgoD.
clusters = set()
for c in re.findall(r'"-([a-zA-Z]+)[" ]', tests):
    clusters.update(c)
    if "a" in c:
        clusters.update("rlptgoD")
for line in rsync_help.splitlines():
    m = re.match(r"^\s*(--[\w-]+)(=\S+)?(?:, (--?[\w-]+))?\s+(.*)$", line)
    if not m:
        continue
    long, _, short, desc = m.groups()
    if short is not None and short.startswith("--"):
        short = None
    have = re.search(re.escape(long) + r"(?![\w-])", ours) is not None
    tested = re.search(re.escape(long) + r'(?![\w-])', tests) is not None or (
        short is not None and short[1] in clusters)
    status = "yes" if have and tested else ("accepted" if have else "no")
    print(f"| `{long}`{' `'+short+'`' if short else ''} | {status} | {desc} |")
