"""The `attnpick` command: parse, call, render, exit code. Nothing else lives here.

Exit codes: 0 success; 2 bad input or usage (one line, no traceback); 3 the forced backend cannot run here
or nothing is eligible (every reason is printed); 4 a backend failed parity (`verify`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from attnpick.errors import AttnpickError, UsageError

BACKEND_ENV = "ATTNPICK_BACKEND"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}. Run '{self.prog} --help' for the options.")


def _decision_options(parser: argparse.ArgumentParser) -> None:
    from attnpick.catalog import BACKEND_NAMES, DTYPES

    parser.add_argument("--backend", action="append", metavar="NAME|auto",
                        help=f"auto (default) or one of: {', '.join(BACKEND_NAMES)}; env {BACKEND_ENV}")
    parser.add_argument("--dtype", metavar="DTYPE", help=f"one of {', '.join(DTYPES)}; default: the device's best")
    parser.add_argument("--model", metavar="DIR", help="a local model folder; only its config.json is read")
    parser.add_argument("--inference", action="store_true", help="no training planned (no backward pass needed)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="attnpick", description="Pick the fastest attention backend that really works here.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    doctor = sub.add_parser("doctor", help="probe this machine and explain the choice of backend")
    _decision_options(doctor)
    doctor.add_argument("--fresh", action="store_true", help="ignore cached import checks")
    doctor.add_argument("--policy", default="auto", choices=("auto", "measured"),
                        help="measured: rank eligible backends by measured speed (shapes of --model, default "
                             "tiny-exaone, at --seq-len) among those that pass parity")
    doctor.add_argument("--seq-len", type=int, default=256, metavar="N", help="sequence length for --policy measured")
    doctor.set_defaults(func=cmd_doctor)

    plan = sub.add_parser("plan", help="what attnpick would pick on the machine described by a facts file")
    plan.add_argument("--env", required=True, metavar="FILE", help="facts JSON (doctor --json output or its "
                      "'facts'); '-' reads standard input")
    _decision_options(plan)
    plan.set_defaults(func=cmd_plan)

    load = sub.add_parser("load", help="load a model with the fastest backend proven to work here")
    load.add_argument("model", nargs="?", default="tiny-exaone",
                      help="tiny-exaone (default), a local folder laid out like the hub, or a cached hub id")
    load.add_argument("--backend", action="append", metavar="NAME|auto", help=f"auto (default) or one backend; "
                      f"env {BACKEND_ENV}")
    load.add_argument("--dtype", metavar="DTYPE", help="bfloat16, float16 or float32; default: the device's best")
    load.add_argument("--4bit", dest="load_in_4bit", action="store_true", help="bitsandbytes NF4 (QLoRA)")
    load.add_argument("--max-seq-length", type=int, default=2048, metavar="N")
    load.add_argument("--trust-remote-code", action="store_true",
                      help="allow the repository's own Python code (only used when transformers has no class)")
    load.add_argument("--exaone-as-llama", action="store_true",
                      help="load EXAONE through attnpick's Llama mapping even where transformers has it natively")
    load.add_argument("--smoke-timeout", type=float, default=300.0, metavar="S")
    load.add_argument("--fresh", action="store_true", help="ignore cached import checks and smoke results")
    load.add_argument("--policy", default="auto", choices=("auto", "measured"),
                      help="auto: the guide's order; measured: the fastest backend that passed parity here")
    load.add_argument("--json", action="store_true", help="print the load report as JSON")
    load.set_defaults(func=cmd_load, inference=False)

    verify = sub.add_parser("verify", help="compare every working backend with eager float32 on a padded batch")
    verify.add_argument("model", nargs="?", default="tiny-exaone")
    verify.add_argument("--backends", metavar="A,B", help="backends to check (default: every one that runs here)")
    verify.add_argument("--dtype", metavar="DTYPE", help="dtype of the backends (the reference is float32)")
    verify.add_argument("--lora", action="store_true", help="attach a LoRA and compare LoRA gradients")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

    bench = sub.add_parser("bench", help="measure speed and memory of every backend that passed parity")
    bench.add_argument("model", nargs="?", default="tiny-exaone")
    bench.add_argument("--seq-lens", default="256,1024,4096", metavar="A,B,C")
    bench.add_argument("--batch", type=int, default=1, metavar="N")
    bench.add_argument("--mode", default="kernel", metavar="kernel|train|infer")
    bench.add_argument("--backends", metavar="A,B", help="backends to measure (default: every one that runs here)")
    bench.add_argument("--dtype", metavar="DTYPE")
    bench.add_argument("--lora", action="store_true", help="train mode: train a LoRA only")
    bench.add_argument("--repeats", type=int, metavar="N")
    bench.add_argument("--no-verify", action="store_true", help="skip the parity check before timing")
    bench.add_argument("--plot", metavar="FILE.png")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)

    tr = sub.add_parser("train", help="QLoRA fine-tune with the proven backend (packing checked, exact resume)")
    tr.add_argument("model", nargs="?", default="tiny-exaone")
    tr.add_argument("--data", default="embedded", metavar="FILE.jsonl",
                    help="chat, instruction/input/output or prompt/completion JSONL (default: the embedded set)")
    tr.add_argument("--output", required=True, metavar="DIR")
    tr.add_argument("--backend", action="append", metavar="NAME|auto")
    tr.add_argument("--dtype", metavar="DTYPE")
    tr.add_argument("--no-4bit", dest="load_in_4bit", action="store_false", help="LoRA on the full-precision model")
    tr.add_argument("--max-seq-length", type=int, default=256, metavar="N")
    tr.add_argument("--packing", default="auto", metavar="auto|on|off")
    tr.add_argument("--epochs", type=float, default=1.0)
    tr.add_argument("--max-steps", type=int, default=-1)
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--learning-rate", "--lr", type=float, default=2e-4)
    tr.add_argument("--scheduler", default="linear", metavar="NAME", help="transformers' lr_scheduler_type")
    tr.add_argument("--warmup", type=float, default=0.0, help="< 1: fraction of the steps; >= 1: steps")
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument("--logging-steps", type=int, default=1)
    tr.add_argument("--save-steps", type=int, default=50)
    tr.add_argument("--lora-r", type=int, default=16)
    tr.add_argument("--lora-alpha", type=int, default=32)
    tr.add_argument("--lora-dropout", type=float, default=0.0)
    tr.add_argument("--target-modules", default=",".join(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"]))
    tr.add_argument("--resume", action="store_true", help="continue from the output folder's last complete checkpoint")
    tr.add_argument("--json", action="store_true", help="print the train report as JSON (no progress bar)")
    tr.set_defaults(func=cmd_train, inference=False)
    return parser


def _request(args: argparse.Namespace) -> Any:
    from attnpick.decision import Request
    from attnpick.probe import disabled_backends

    off = disabled_backends()
    if args.backend:
        return Request.from_names(args.backend, args.dtype, not args.inference, source="--backend", disabled=off)
    if os.environ.get(BACKEND_ENV):
        return Request.from_names(os.environ[BACKEND_ENV], args.dtype, not args.inference, source=BACKEND_ENV,
                                  disabled=off)
    return Request.from_names(None, args.dtype, not args.inference, disabled=off)


def _model(args: argparse.Namespace) -> Any:
    if not args.model:
        return None
    from attnpick.model_info import read_model_facts

    return read_model_facts(args.model)


def _finish(decision: Any, payload: dict[str, Any], as_json: bool, show: Any) -> int:
    if as_json:
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        show()
    decision.require()
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from attnpick.decision import choose
    from attnpick.probe import collect_facts

    request, model = _request(args), _model(args)
    facts = collect_facts(fresh=args.fresh)
    decision = choose(facts, request, model)
    if args.policy == "measured" and not request.forced:
        from attnpick.bench import measured_decision

        _quiet_transformers()
        decision = measured_decision(facts, decision, args.model or "tiny-exaone", args.seq_len,
                                     use_cache=not args.fresh)

    def show() -> None:
        from rich.console import Console

        from attnpick.render import print_doctor

        print_doctor(Console(), facts, decision)

    return _finish(decision, {"facts": facts.to_dict(), "decision": decision.to_dict()}, args.json, show)


def cmd_plan(args: argparse.Namespace) -> int:
    from attnpick.decision import choose
    from attnpick.facts import EnvFacts

    request, model = _request(args), _model(args)
    facts = EnvFacts.from_dict(_read_facts_doc(args.env), source=args.env)
    decision = choose(facts, request, model)

    def show() -> None:
        from rich.console import Console

        from attnpick.render import facts_table, print_decision

        console = Console()
        console.print(facts_table(facts))
        print_decision(console, decision)

    return _finish(decision, decision.to_dict(), args.json, show)


def cmd_load(args: argparse.Namespace) -> int:
    from attnpick.errors import NoBackendError
    from attnpick.loading import load_model
    from attnpick.probe import collect_facts

    if args.max_seq_length < 1:
        raise UsageError(f"--max-seq-length must be a positive number of tokens, got {args.max_seq_length}.")
    request = _request(args)
    facts = collect_facts(fresh=args.fresh)
    _quiet_transformers()
    try:
        _, _, report = load_model(
            args.model, max_seq_length=args.max_seq_length, dtype=request.dtype, load_in_4bit=args.load_in_4bit,
            trust_remote_code=args.trust_remote_code, backend=request.backend, facts=facts,
            smoke_timeout=args.smoke_timeout, use_cache=not args.fresh, force_llama_mapping=args.exaone_as_llama,
            policy=args.policy,
        )
    except NoBackendError as exc:
        if args.json and exc.decision is not None:
            print(json.dumps({"error": str(exc), "decision": exc.decision.to_dict()}, indent=2, ensure_ascii=False))
        raise
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        from attnpick.render import print_load_report

        print_load_report(Console(), report)
    return 0


def _backend_list(text: str | None) -> list[str] | None:
    from attnpick.catalog import BACKEND_NAMES

    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKEND_NAMES and not _registered_in_transformers(n)]
    if unknown:
        raise UsageError(f"Unknown backend {unknown[0]!r}. Choose from: {', '.join(BACKEND_NAMES)}.")
    return names


def _registered_in_transformers(name: str) -> bool:
    """A name some code in this process registered in transformers' AttentionInterface (a plugin)."""
    module = sys.modules.get("transformers.modeling_utils")
    return module is not None and name in module.AttentionInterface._global_mapping


def cmd_verify(args: argparse.Namespace) -> int:
    from attnpick.decision import Request
    from attnpick.parity import verify

    backends = _backend_list(args.backends)
    dtype = Request.from_names(None, args.dtype).dtype
    _quiet_transformers()
    report = verify(args.model, backends=backends, dtype=dtype, lora=args.lora)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        from attnpick.render import print_verify

        print_verify(Console(), report)
    if not report.results:
        raise UsageError("No backend could be verified here; see 'attnpick doctor'.")
    return 0 if report.ok else 4


def cmd_bench(args: argparse.Namespace) -> int:
    from attnpick.bench import MODES, bench, plot
    from attnpick.decision import Request

    if args.mode not in MODES:
        raise UsageError(f"Unknown --mode {args.mode!r}. Choose one of: {', '.join(MODES)}.")
    try:
        seq_lens = tuple(int(x) for x in args.seq_lens.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--seq-lens must be comma-separated token counts, got {args.seq_lens!r}.") from None
    if not seq_lens or min(seq_lens) < 1 or args.batch < 1 or (args.repeats is not None and args.repeats < 1):
        raise UsageError("--seq-lens, --batch and --repeats must be positive numbers.")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot writes a PNG; give a file name ending in .png, got {args.plot!r}.")
    backends = _backend_list(args.backends)
    dtype = Request.from_names(None, args.dtype).dtype
    _quiet_transformers()
    report = bench(args.model, seq_lens=seq_lens, batch=args.batch, mode=args.mode, backends=backends,
                   dtype=dtype, lora=args.lora, repeats=args.repeats, verify_first=not args.no_verify)
    if args.plot:
        plot(report, args.plot)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        from attnpick.render import print_bench

        print_bench(Console(), report)
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from attnpick.training import TrainConfig, train

    request = _request(args)
    config = TrainConfig(
        model=args.model, data=args.data, output=args.output, backend=request.backend, dtype=request.dtype,
        load_in_4bit=args.load_in_4bit, max_seq_length=args.max_seq_length, packing=args.packing,
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        learning_rate=args.learning_rate, scheduler=args.scheduler, warmup=args.warmup, seed=args.seed,
        logging_steps=args.logging_steps, save_steps=args.save_steps, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=[m.strip() for m in args.target_modules.split(",") if m.strip()], resume=args.resume,
        progress=not args.json,
    )
    _quiet_transformers()
    report = train(config)
    if not report:
        return 0  # not rank 0
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        from attnpick.render import print_train

        load = json.loads((Path(args.output) / "load_report.json").read_text(encoding="utf-8"))
        print_train(Console(), report, args.output, load)
    return 0


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _read_facts_doc(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"Facts file {name!r} does not exist. Write one with 'attnpick doctor --json > FILE'."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Facts file {name!r} cannot be read: {exc}.") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"Facts file {name!r} is not valid JSON ({exc}). "
                         "Write one with 'attnpick doctor --json > FILE'.") from None
    # `doctor --json` output carries the facts under "facts"; a bare facts document works too.
    if isinstance(doc, dict) and isinstance(doc.get("facts"), dict):
        return doc["facts"]
    return doc


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except AttnpickError as exc:
        print(f"attnpick: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("attnpick: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
