"""The ``hotline`` command: run the stack, train the model, migrate the database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from aiohttp import web

from hotline.config import SECRET_KEYS, ConfigError, Settings, load_settings
from hotline.logs import setup_logging


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from exc


async def _migrate(settings: Settings) -> None:
    from hotline.store.db import make_engine, migrate

    engine = make_engine(settings.database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def _serve(settings: Settings, with_rasa: bool) -> None:
    from hotline.appkeys import CHANNELS
    from hotline.supervisor import rasa_children, wait_ready
    from hotline.training import train
    from hotline.web import create_app, start_voice

    children = []
    asterisk = None
    logs = settings.var_dir / "log"
    logs.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    try:
        if with_rasa:
            model = await asyncio.to_thread(train, settings)
            children = rasa_children(settings, model, logs)
            for child in children:
                print(
                    f"[run] starting {child.name} (log: {logs / (child.name + '.log')})", flush=True
                )
                child.start()
        settings, asterisk = await start_voice(settings)
        print("[run] starting hub, migrating database", flush=True)
        await _migrate(settings)
        runner = web.AppRunner(create_app(settings, run_migrations=False), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        origin = f"http://{settings.http_host}:{settings.http_port}"
        print(f"[run] citizen page: {origin}/", flush=True)
        print(f"[run] agent console: {origin}/console/", flush=True)
        for channel in runner.app[CHANNELS]:
            hint = channel.how_to_try(origin)
            if hint:
                print(f"[run] try {channel.name}: {hint}", flush=True)
        if children:
            waiter = asyncio.create_task(wait_ready(children))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if waiter in done:
                waiter.result()
                print("[run] stack ready. Press Ctrl-C to stop.", flush=True)
            else:
                waiter.cancel()
        await stop.wait()
        print("\n[run] stopping", flush=True)
    finally:
        if runner is not None:
            await runner.cleanup()
        for child in reversed(children):
            child.stop()
        if asterisk is not None:
            asterisk.stop()
        print("[run] stopped", flush=True)


def _print_config(settings: Settings) -> None:
    from hotline.web import available_channels, check_channels

    for key, value in sorted(vars(settings).items()):
        if key == "channel_sections":
            continue
        shown = "<set>" if key in SECRET_KEYS else value
        print(f"{key} = {shown}")
    try:
        checked = check_channels(settings)
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from exc
    for name in available_channels():
        if name not in checked:
            print(f"channel {name}: off (add it to HOTLINE_CHANNELS)")
            continue
        print(f"channel {name}: on")
        describe = getattr(checked[name], "describe", None)
        for key, value in (describe() if callable(describe) else {}).items():
            print(f"  {name}.{key} = {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hotline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start Rasa, the action server and the hub")
    run.add_argument("--no-rasa", action="store_true", help="start only the hub")
    train = sub.add_parser("train", help="train the Rasa model if nlu/ changed")
    train.add_argument("--force", action="store_true")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("config", help="print the validated configuration (secrets hidden)")
    _add_simulators(sub)
    args = parser.parse_args(argv)

    settings = _settings()
    setup_logging(settings.log_level, settings.log_file)
    if args.command == "run":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings, with_rasa=not args.no_rasa))
    elif args.command == "train":
        from hotline.training import train as do_train

        do_train(settings, force=args.force)
    elif args.command == "migrate":
        asyncio.run(_migrate(settings))
        print("[migrate] database is at the latest schema")
    elif args.command == "config":
        _print_config(settings)
    elif args.command == "simulate":
        sys.exit(asyncio.run(args.simulator.run(args, settings)))
    sys.exit(0)


def _add_simulators(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hotline simulate <channel>``: one per channel that ships a simulator."""
    from hotline.web import simulators

    simulate = sub.add_parser("simulate", help="play a citizen on a channel's real transport")
    channels = simulate.add_subparsers(dest="channel", required=True)
    for name, module in simulators().items():
        parser = channels.add_parser(name, help=module.HELP)
        module.add_arguments(parser)
        parser.set_defaults(simulator=module)


if __name__ == "__main__":
    main()
