"""``python -m sextant``: ``sync`` sends what the spool holds (runs logged offline,
batches a crash or an outage left behind); ``status`` lists it."""

import argparse
import logging
import sys
from typing import List, Optional

from ._http import SextantError
from ._spool import default_root, list_spools
from ._sync import sync


def _status(spool_dir: Optional[str]) -> int:
    spools = list_spools(spool_dir)
    if not spools:
        print("nothing waiting in {}".format(spool_dir or default_root()))
        return 0
    for spool in spools:
        meta = spool.meta
        pending = spool.pending()
        state = "done (refused items kept)" if meta.get("done") else (
            "in use" if not spool.try_lock() else "waiting"
        )
        spool.unlock()
        print(
            "{}  {}  run={} project={} batches={} files={} end={}  [{}]".format(
                spool.key,
                meta.get("mode", "online"),
                meta.get("run_id") or "(not created yet)",
                meta.get("project"),
                pending["batches"],
                pending["ops"],
                spool.finish_status() or "-",
                state,
            )
        )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sextant", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sync_cmd = commands.add_parser(
        "sync", help="send everything waiting in the spool (offline runs, leftovers)"
    )
    sync_cmd.add_argument("runs", nargs="*", help="only these run ids or spool directory names")
    sync_cmd.add_argument("--spool-dir", help="the spool (default: $SEXTANT_SPOOL_DIR or ~/.cache/sextant/spool)")
    sync_cmd.add_argument("--url", help="send to this server instead of the one each run was logged for")
    sync_cmd.add_argument("--api-key", help="the API key (default: $SEXTANT_API_KEY)")
    sync_cmd.add_argument("--timeout", type=float, default=300.0, help="seconds to keep retrying per run")
    sync_cmd.add_argument("--no-offline", action="store_true", help="skip runs logged offline")
    status_cmd = commands.add_parser("status", help="list what waits in the spool")
    status_cmd.add_argument("--spool-dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    if args.command == "status":
        return _status(args.spool_dir)
    try:
        results = sync(
            spool_dir=args.spool_dir,
            url=args.url,
            api_key=args.api_key,
            offline=not args.no_offline,
            timeout=args.timeout,
            only=args.runs or None,
        )
    except SextantError as error:
        print("sextant sync: {}".format(error), file=sys.stderr)
        return 2
    failed = 0
    for result in results:
        if result.get("ok"):
            print(
                "synced {}: run {} ({} batches, {} points, {} files{})".format(
                    result["spool"],
                    result.get("run_id"),
                    result.get("batches", 0),
                    result.get("points", 0),
                    result.get("files", 0),
                    ", {} refused".format(result["rejected"]) if result.get("rejected") else "",
                )
            )
        else:
            failed += 1
            print("not synced {}: {}".format(result["spool"], result.get("error", "the server could not be reached; try again")), file=sys.stderr)
    if not results:
        print("nothing to sync")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
