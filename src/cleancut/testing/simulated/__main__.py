"""`python -m cleancut.testing.simulated`: run the simulated agent, check a copy, make bulk data.

    run   --root DIR --socket PATH --oracle PATH [--seed N] [--flush-interval S]
          [--turn-pause S] [--async-fraction F] [--stuck N] [--hang]
          [--index-debounce S] [--reindex-every N]
          [--journal DIR [--journal-start-after N] [--index PATH]]
    check DIR [--oracle O] [--inflight-ok KEY]... [--not-quiesced]
          [--journaled] [--journal-seq N]
    bulk  DIR --bytes N --files N [--seed N]

Exit codes: 0 fine (check: consistent), 1 violations found, 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .agent import AgentOptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cleancut.testing.simulated")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the simulated agent until SIGTERM")
    run.add_argument("--root", type=Path, required=True, help="holds state/ and workspace/")
    run.add_argument("--socket", type=Path, required=True, help="control socket to serve")
    run.add_argument("--oracle", type=Path, required=True, help="oracle file (outside --root)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--flush-interval", type=float, default=15.0, metavar="S")
    run.add_argument("--turn-pause", type=float, default=0.0, metavar="S",
                     help="sleep between turns (default: none, as fast as it can)")
    run.add_argument("--async-fraction", type=float, default=0.0, metavar="F",
                     help="fraction of tool sends whose receipt arrives later")
    run.add_argument("--stuck", type=int, default=0, metavar="N",
                     help="the first N accepted sends never settle")
    run.add_argument("--hang", action="store_true",
                     help="hold one turn open forever (quiesce must time out)")
    run.add_argument("--index-debounce", type=float, default=0.2, metavar="S")
    run.add_argument("--reindex-every", type=int, default=25, metavar="N",
                     help="every Nth indexer run is a full reindex (0: never)")
    run.add_argument("--journal", type=Path, metavar="DIR",
                     help="journal mode: write the tree through a journal in DIR (outside "
                          "--root); may start on an existing --root (a restart, a restore)")
    run.add_argument("--journal-start-after", type=int, metavar="N",
                     help="with --journal on a restored tree: a new journal whose first "
                          "record is N+1 (N: the sequence number it was restored at)")
    run.add_argument("--index", type=Path, metavar="PATH",
                     help="with --journal: the memory index (outside --root; default: "
                          "beside the journal, DIR-index/main.sqlite)")

    check = sub.add_parser("check", help="check a copy of the agent's tree")
    check.add_argument("dir", type=Path)
    check.add_argument("--oracle", type=Path)
    check.add_argument("--inflight-ok", action="append", default=[], metavar="KEY",
                       help="a ledger key the backup recorded as in flight (repeatable)")
    check.add_argument("--not-quiesced", action="store_true",
                       help="hold the copy to the crash-consistent standard")
    check.add_argument("--journaled", action="store_true",
                       help="the copy is a journal state: every write whole")
    check.add_argument("--journal-seq", type=int, metavar="N",
                       help="with --oracle: the copy is exactly the state at journal record N")

    bulk = sub.add_parser("bulk", help="write bulk attachments under DIR/workspace/attachments")
    bulk.add_argument("dir", type=Path)
    bulk.add_argument("--bytes", type=int, required=True)
    bulk.add_argument("--files", type=int, required=True)
    bulk.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from .process import StartError, run_agent

        if not 0.0 <= args.async_fraction <= 1.0:
            print("error: --async-fraction must be between 0 and 1", file=sys.stderr)
            return 2
        if args.journal is None and (args.journal_start_after is not None or args.index):
            print("error: --journal-start-after and --index need --journal", file=sys.stderr)
            return 2
        opts = AgentOptions(
            root=args.root, socket=args.socket, oracle=args.oracle, seed=args.seed,
            flush_interval=args.flush_interval, turn_pause=args.turn_pause,
            async_fraction=args.async_fraction, stuck=args.stuck, hang=args.hang,
            index_debounce=args.index_debounce, reindex_every=args.reindex_every,
            journal=args.journal, journal_start_after=args.journal_start_after,
            index=args.index,
        )
        try:
            return run_agent(opts)
        except StartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "check":
        from .checker import check_workspace

        if not args.dir.is_dir():
            print(f"error: {args.dir} is not a directory", file=sys.stderr)
            return 2
        if args.oracle is not None and not args.oracle.is_file():
            print(f"error: no oracle file at {args.oracle}", file=sys.stderr)
            return 2
        found = check_workspace(args.dir, args.oracle, frozenset(args.inflight_ok),
                                quiesced=not args.not_quiesced, journaled=args.journaled,
                                journal_seq=args.journal_seq)
        for line in found:
            print(line)
        if not found:
            print("consistent")
        return 1 if found else 0
    from .bulk import make_bulk

    made = make_bulk(args.dir, args.bytes, args.files, args.seed)
    print(f"wrote {len(made)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
