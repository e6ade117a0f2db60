#!/bin/bash
# A/B of unchanged backups from cold caches, alternated with restic in one run.
#
#   benchmarks/unchanged_ab.sh ROUNDS SOURCE CLEANCUT_CMD [CLEANCUT_CMD ...]
#
# Each round runs every CLEANCUT_CMD (`<cmd> backup SOURCE --json --quiet`), then
# `restic backup --quiet --tag unchanged SOURCE`, each after `sync` and
# `echo 3 > /proc/sys/vm/drop_caches` (root), under `nice -n -19 ionice -c1 -n0` so a
# shared machine's other work comes second (set PRIORITY= to run without it). The
# repositories come from the environment (CLEANCUT_REPO, CLEANCUT_PASSWORD,
# CLEANCUT_CACHE_DIR, RESTIC_REPOSITORY, RESTIC_PASSWORD, RESTIC_CACHE_DIR): use copies,
# every step adds a snapshot. Prints wall, user and sys seconds and the load average
# per step, and each cleancut step's files / files_unchanged / bytes_read.
set -u
rounds=$1; source=$2; shift 2
priority=${PRIORITY-nice -n -19 ionice -c1 -n0}
step() {
  sync; echo 3 > /proc/sys/vm/drop_caches
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  $priority /usr/bin/time -f "$1 %e s (user %U sys %S) load $load" "${@:2}"
}
out=$(mktemp); err=$(mktemp); trap 'rm -f "$out" "$err"' EXIT
for _ in $(seq "$rounds"); do
  for cmd in "$@"; do
    step "$cmd" $cmd backup "$source" --json --quiet >"$out" 2>"$err"; tail -1 "$err"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('   files', d['files'], 'unchanged', d['files_unchanged'], 'read', d['bytes_read'])" "$out" || cat "$err"
  done
  step restic restic backup --quiet --tag unchanged "$source" 2>&1 | tail -1
done
