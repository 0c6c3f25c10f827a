"""``python -m batchgen.emulator`` (also ``batchgen emulator``): serve on loopback until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib

from .faults import ENDPOINTS, Faults
from .server import Emulator, EmulatorConfig


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    return float(low), float(high or low)


def parser() -> argparse.ArgumentParser:
    """The emulator's command line."""
    p = argparse.ArgumentParser(
        prog="batchgen emulator",
        description="A RunComfy Model API emulator on loopback, with fault injection.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 = any free)")
    p.add_argument("--token", default="emulator-token", help="the only token accepted")
    p.add_argument("--seed", type=int, default=0, help="seed for fault decisions and timings")
    p.add_argument(
        "--gen-seconds",
        type=_range,
        default=(2.0, 5.0),
        metavar="MIN:MAX",
        help="generation time range in seconds (default 2:5)",
    )
    p.add_argument("--queue-seconds", type=float, default=0.0, help="time in queue first")
    p.add_argument("--concurrency", type=int, default=0, help="account cap on running jobs")
    p.add_argument("--no-credit", action="store_true", help="answer every submit with 402")
    p.add_argument("--output-shape", choices=["video", "videos", "mixed"], default="video")
    p.add_argument("--big-file-bytes", type=int, default=0, help="serve blobs of this size")
    f = p.add_argument_group("faults (probabilities 0..1 unless said)")
    f.add_argument("--rate-limit", type=float, default=0.0, help="requests/s before 429")
    f.add_argument("--fail-5xx", type=float, default=0.0)
    f.add_argument("--drop", type=float, default=0.0, help="close connections unanswered")
    f.add_argument("--slow", type=float, default=0.0, help="seconds of delay per answer")
    f.add_argument("--bad-json", type=float, default=0.0)
    f.add_argument("--error-code-200", type=float, default=0.0)
    f.add_argument("--truncate-download", type=float, default=0.0)
    f.add_argument("--slow-download", type=float, default=0.0, help="bytes per second")
    f.add_argument("--fail-generation", type=float, default=0.0)
    f.add_argument("--accept-then-502", type=float, default=0.0)
    f.add_argument(
        "--fault-endpoints",
        default=",".join(sorted(ENDPOINTS)),
        help="endpoints the generic faults hit (default: all)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Build the config from parsed options."""
    faults = Faults(
        rate_limit=args.rate_limit,
        fail_5xx=args.fail_5xx,
        drop=args.drop,
        slow=args.slow,
        bad_json=args.bad_json,
        error_code_200=args.error_code_200,
        truncate_download=args.truncate_download,
        slow_download=args.slow_download,
        fail_generation=args.fail_generation,
        accept_then_502=args.accept_then_502,
        endpoints=frozenset(args.fault_endpoints.split(",")) & ENDPOINTS,
    )
    return EmulatorConfig(
        token=args.token,
        gen_seconds=args.gen_seconds,
        queue_seconds=args.queue_seconds,
        concurrency=args.concurrency,
        no_credit=args.no_credit,
        output_shape=args.output_shape,
        big_file_bytes=args.big_file_bytes,
        faults=faults,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    args = parser().parse_args(argv)
    emulator = Emulator(config_from_args(args), host=args.host, port=args.port)
    emulator.start()
    print(f"RunComfy emulator on {emulator.url}  token: {args.token}", flush=True)
    print(
        f"try: RUNCOMFY_API_TOKEN={args.token} batchgen run jobs/demo.yaml --out out/demo "
        f"--base-url {emulator.url}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        emulator.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
