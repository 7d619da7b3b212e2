"""The `attnpick` command: parse, call, render, exit code. Nothing else lives here.

Exit codes: 0 success; 1 an unexpected error (one line naming the log with the traceback); 2 bad input or
usage (one line, no traceback); 3 the forced backend cannot run here or nothing is eligible (every reason is
printed); 4 a backend failed parity (`verify`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

from attnpick import settings
from attnpick.backends.registry import BACKEND_NAMES, DTYPES
from attnpick.cli.chat import ChatConfig, answer, context_note, converse, opening
from attnpick.cli.render import (
    backend_phrase,
    facts_table,
    print_bench,
    print_decision,
    print_doctor,
    print_load_report,
    print_train,
    print_verify,
)
from attnpick.decide.decision import Request
from attnpick.decide.probe import collect_facts
from attnpick.errors import AttnpickError, NoBackendError, UsageError, first_line
from attnpick.export.trained import ExportConfig, export_trained
from attnpick.loading import DoctorConfig, LoadConfig, PlanConfig, request_for
from attnpick.measure.bench import BenchConfig
from attnpick.measure.parity import VerifyConfig
from attnpick.settings import BACKEND_ENV
from attnpick.training.config import TrainConfig
from attnpick.training.run import train
from attnpick.util import files
from attnpick.util.cache import cache_dir
from attnpick.util.options import cli_fields


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}. Run '{self.prog} --help' for the options.")


def _backend_option(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """`--backend A[,B]` on every command (`--backends` is the same option): one backend where a model is loaded,
    several where backends are compared (verify, bench)."""
    if several:
        parser.add_argument("--backend", "--backends", dest="backend", action="append", metavar="A[,B]",
                            help="backends to check (default: every one that runs here)")
        return
    parser.add_argument("--backend", "--backends", dest="backend", action="append", metavar="NAME|auto",
                        help=f"auto (default) or one of: {', '.join(BACKEND_NAMES)}; env {BACKEND_ENV}")


def _dtype_option(parser: argparse.ArgumentParser, what: str = "compute dtype") -> None:
    parser.add_argument("--dtype", metavar="DTYPE", help=f"{what}: {', '.join(DTYPES)}; default: the device's best")


def _json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON instead of tables")


def _config_options(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One option per field of a config dataclass (`TrainConfig`, `LoadConfig`, `VerifyConfig`, `BenchConfig`), with
    the field's help and default: the CLI restates nothing the library declares."""
    for name, default, meta in cli_fields(config_class):
        kind = meta.get("kind")
        if meta.get("positional"):  # `attnpick train MODEL` and `attnpick train --model MODEL` alike
            parser.add_argument(name, nargs="?", default=None, help=meta["help"] + (f" (default: {default})"
                                                                                   if default else ""))
            parser.add_argument(f"--{name}", dest=f"{name}_option", metavar=name.upper(), help=f"the same as {name}")
        elif kind in ("backend", "backends"):
            _backend_option(parser, several=kind == "backends")
        elif kind == "dtype":
            _dtype_option(parser, meta["help"])
        elif meta.get("action"):
            flag = meta.get("flag", "--" + name.replace("_", "-"))
            parser.add_argument(flag, dest=name, action=meta["action"], help=meta["help"])
        else:
            flag = meta.get("flag", "--" + name.replace("_", "-"))
            natural = type(default) if default is not None else str
            value_type = meta.get("type") or {"list": str}.get(kind or "", natural)
            shown = ",".join(default) if isinstance(default, list) else f"{default:g}" if isinstance(default, float) \
                else default
            parser.add_argument(flag, *meta.get("aliases", ()), dest=name, type=value_type, default=shown,
                                metavar=meta.get("metavar"), choices=meta.get("choices"),
                                required=meta.get("required", False),
                                help=meta["help"] + ("" if meta.get("required") or default is None
                                                     else f" (default: {shown})"))


def _config(args: argparse.Namespace, config_class: type, **overrides: Any) -> Any:
    """The command's config from its options, not validated yet: each command validates where its order needs it
    (`train()` validates after `_quiet_transformers()`, since TrainConfig's check imports transformers)."""
    values = {}
    for name, default, meta in cli_fields(config_class):
        value = getattr(args, name)
        if meta.get("positional"):
            option = getattr(args, f"{name}_option")
            if value is not None and option is not None and value != option:
                raise UsageError(f"Can't provide both {name} {value!r} and --{name} {option!r}. Choose one.")
            value = option if value is None else value
            value = default if value is None else value
        values[name] = value
    return config_class(**{**values, **overrides})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="attnpick", description="Pick the fastest attention backend that really works here, prove "
                     "it, load the model with it, and fine-tune.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    for name, config_class, func, what, json_what in COMMANDS:
        command = sub.add_parser(name, help=what)
        _config_options(command, config_class)
        if json_what:
            _json_option(command, json_what)
        command.set_defaults(func=func)
    return parser


def _request(args: argparse.Namespace) -> Request:
    return request_for(args.backend, args.dtype, origin="--backend")


def _print_json(data: Any) -> None:
    # Korean text as is on a UTF-8 stream; \u escapes (still valid JSON) on a stream that cannot encode it
    print(json.dumps(data, indent=2, ensure_ascii=not _utf8(sys.stdout)))


def _utf8(stream: Any) -> bool:
    return (getattr(stream, "encoding", "") or "").lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


def _safe_streams() -> None:
    """A console that cannot encode Korean (a C or Latin-1 locale, an old Windows code page) shows a replacement
    character instead of crashing the run after its work is done."""
    for stream in (sys.stdout, sys.stderr):
        if not _utf8(stream) and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def _console() -> Any:
    from rich.console import Console

    return Console()


def cmd_doctor(args: argparse.Namespace) -> int:
    config = _config(args, DoctorConfig)
    config.validate()
    if config.policy == "measured":
        _quiet_transformers()
    facts, decision = config.run()
    if args.json:
        _print_json({"facts": facts.to_dict(), "decision": decision.to_dict()})
    else:
        print_doctor(_console(), facts, decision)
    decision.require()
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    config = _config(args, PlanConfig)
    config.validate()
    facts, decision = config.run(_read_facts_doc(config.env))
    if args.json:
        _print_json(decision.to_dict())
    else:
        console = _console()
        console.print(facts_table(facts))
        print_decision(console, decision)
    decision.require()
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    request = _request(args)
    config = _config(args, LoadConfig, backend=request.backend, dtype=request.dtype)
    config.validate()
    facts = collect_facts(fresh=config.fresh)
    _quiet_transformers()
    try:
        _, _, report = config.load(facts)
    except NoBackendError as exc:
        if args.json and exc.decision is not None:
            _print_json({"error": str(exc), "decision": exc.decision.to_dict()})
        raise
    if args.json:
        _print_json(report.to_dict())
    else:
        print_load_report(_console(), report)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    config = _config(args, VerifyConfig)
    config.validate()  # an unknown name is refused before anything loads
    _quiet_transformers()
    report = config.run()
    if args.json:
        _print_json(report.to_dict())
    else:
        print_verify(_console(), report)
    if not report.results:
        raise UsageError("No backend could be verified here; see 'attnpick doctor'.")
    return 0 if report.ok else 4


def cmd_bench(args: argparse.Namespace) -> int:
    config = _config(args, BenchConfig)
    config.validate()
    _quiet_transformers()
    report = config.run()
    if args.json:
        _print_json(report.to_dict())
    else:
        print_bench(_console(), report)
        if config.plot:
            print(f"plot: {config.plot}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    request = _request(args)
    config = _config(args, TrainConfig, backend=request.backend, dtype=request.dtype, progress=not args.json,
                     target_modules=[m.strip() for m in args.target_modules.split(",") if m.strip()])
    _quiet_transformers()
    report = train(config)
    if report is None:
        return 0  # not rank 0
    if args.json:
        _print_json(report.to_dict())
    else:
        print_train(_console(), report)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    config = _config(args, ExportConfig)
    config.validate()
    _quiet_transformers()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), transient=True,
                  console=_console()) as bar:
        tasks: dict[str, Any] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        written, report = export_trained(config, progress)
    print(f"Exported {config.model} ({report.model}, loaded with {backend_phrase(report)}) as {config.format}:")
    for path in written:
        print(f"  {path}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    config = _config(args, ChatConfig, backend=request_for(args.backend, None).backend)
    config.validate()
    _quiet_transformers()
    model, tokenizer, report = config.load()
    print(f"attnpick: chatting with {config.model} ({report.model}) on {backend_phrase(report)}", file=sys.stderr)
    note = context_note(config, model)
    if note:
        print(note, file=sys.stderr)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if config.prompt is not None:
        answer(model, tokenizer, [*opening(config), {"role": "user", "content": config.prompt}], config, write)
        write("\n")
        return 0
    terminal = sys.stdin.isatty()
    if terminal:
        print("Type a message; /reset starts over, /exit (or Ctrl-D) stops.", file=sys.stderr)

    if not terminal and hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(encoding="utf-8-sig", errors="strict")  # a pipe or file is read as UTF-8 everywhere

    def read() -> str | None:
        try:
            return input("> ") if terminal else (sys.stdin.readline() or None)
        except EOFError:
            return None
        except UnicodeDecodeError as exc:
            raise UsageError(f"attnpick chat: standard input is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                             f"at offset {exc.start} of the part read). Give chat UTF-8 lines (save the file as "
                             "UTF-8).") from None

    converse(model, tokenizer, config, read, write)
    return 0


# (command, its config, the function that runs it, its help line, what --json prints or None)
COMMANDS = (
    ("doctor", DoctorConfig, cmd_doctor, "probe this machine and explain the choice of backend",
     "the facts and the decision"),
    ("plan", PlanConfig, cmd_plan, "what attnpick would pick on the machine described by a facts file", "the decision"),
    ("load", LoadConfig, cmd_load, "load a model with the fastest backend proven to work here", "the load report"),
    ("verify", VerifyConfig, cmd_verify, "compare every working backend with eager float32 on a padded batch",
     "the parity report"),
    ("bench", BenchConfig, cmd_bench, "measure speed and memory of every backend that passed parity",
     "the bench report"),
    ("train", TrainConfig, cmd_train, "QLoRA fine-tune with the proven backend (packing checked, exact resume)",
     "the train report (no progress bar)"),
    ("export", ExportConfig, cmd_export, "a trained run as a merged model folder or GGUF files for llama.cpp", None),
    ("chat", ChatConfig, cmd_chat, "talk to a run, an adapter or a model (its chat template, the proven backend)",
     None),
)


def _drop_bnb_cpu_kernel_warning(record: logging.LogRecord) -> bool:
    """bitsandbytes warns on import, on AVX512-BF16 CPUs, that it cannot fetch a hub kernel for its CPU inference
    layout; attnpick keeps 4-bit layers out of that layout (attnpick.load.quantization.keep_trainable)."""
    return "gemm_4bit_forward" not in str(record.msg)


def _quiet_libraries(debug: bool) -> None:
    """The CLI shows attnpick's own messages: the libraries' warnings and log lines (import-time notices of
    torchao, bitsandbytes, kernels, torch) only with --debug."""
    if debug:
        return
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    root.addHandler(logging.NullHandler())  # nothing falls through to logging's last-resort stderr handler
    root.setLevel(logging.ERROR)


def _quiet_transformers() -> None:
    """Before the heavy libraries load: their errors only, no progress bars of theirs (attnpick shows its own),
    no bitsandbytes import noise. torch resets its own loggers on import, so it is imported first."""
    import torch  # noqa: F401 - imported before its logger's level is set, since importing it resets the level

    if logging.getLogger().level >= logging.ERROR:
        logging.getLogger("torch").setLevel(logging.ERROR)
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("attnpick").addHandler(logging.NullHandler())  # the CLI renders attnpick's notes itself
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_drop_bnb_cpu_kernel_warning)


def _read_facts_doc(name: str) -> Any:
    hint = "Write one with 'attnpick doctor --json > FILE'."
    try:
        text = sys.stdin.read() if name == "-" else files.read_text(name)
    except FileNotFoundError:
        raise UsageError(f"Facts file {name!r} does not exist. {hint}") from None
    except UnicodeDecodeError:
        raise UsageError(f"Facts file {name!r} is neither UTF-8 nor UTF-16 text. Save it as UTF-8. {hint}") from None
    except OSError as exc:
        raise UsageError(f"Facts file {name!r} cannot be read ({exc.strerror or exc}). {hint}") from None
    try:
        doc = json.loads(text.lstrip("\ufeff"))
    except RecursionError:
        raise UsageError(f"Facts file {name!r} is nested too deeply to be a facts document. {hint}") from None
    except ValueError as exc:
        raise UsageError(f"Facts file {name!r} is not valid JSON ({exc}). {hint}") from None
    # `doctor --json` output carries the facts under "facts"; a bare facts document works too.
    if isinstance(doc, dict) and isinstance(doc.get("facts"), dict):
        return doc["facts"]
    return doc


def _log_unexpected(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected error to a log file; its path, or None if nothing can be written."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for folder in (cache_dir() / "logs", Path.cwd()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"attnpick-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            files.write_text(path, f"attnpick {' '.join(sys.argv[1:])}\n\n{text}")
            return path
        except OSError:
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or settings.debug()
    _safe_streams()
    _quiet_libraries(debug)
    try:
        args = build_parser().parse_args(argv)
        settings.check_environment(BACKEND_NAMES)
        return int(args.func(args))
    except AttnpickError as exc:
        print(f"attnpick: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("attnpick: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if not files.is_disk_full(exc):
            return _unexpected(exc, debug)
        print(f"attnpick: no space left on the device ({first_line(exc)}): nothing half-written is counted. Free "
              "some space and run the command again.", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - anything unexpected: one line, the traceback in a log
        return _unexpected(exc, debug)


def _unexpected(exc: Exception, debug: bool) -> int:
    """An error attnpick did not foresee: one line naming the log with the traceback, exit 1."""
    if debug:
        raise exc
    log = _log_unexpected(exc)
    where = f"the traceback is in {log}" if log else "no log could be written"
    message = first_line(exc)
    print(f"attnpick: unexpected error: {type(exc).__name__}: {message} ({where}; rerun with --debug to see it "
          "here, and please report it)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
