"""Human views of facts and decisions. JSON comes from the same objects' `to_dict()`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from attnpick.backends.registry import CATALOG, PROBED_MODULES
from attnpick.decide.decision import Decision
from attnpick.decide.facts import EnvFacts
from attnpick.load.chain import LoadReport
from attnpick.measure.bench import BenchReport, fmt_seconds, speedups, spread
from attnpick.measure.parity import VerifyReport
from attnpick.training import TrainReport

_VERDICT = {"accepted": "[bold green]chosen[/]", "rejected": "[red]rejected[/]", "eligible": "[dim]eligible[/]"}


def facts_table(facts: EnvFacts) -> Table:
    device = facts.device
    table = Table(title="Machine", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("OS / Python", f"{facts.os} / {facts.python}")
    table.add_row("torch / CUDA", f"{facts.torch or 'not installed'} / {facts.cuda or '-'}")
    gpu = device.name or "-"
    if device.capability:
        gpu += f" (capability {device.capability})"
    if device.memory_gb:
        gpu += f", {device.memory_gb} GiB"
    table.add_row("Device", f"{device.type}: {gpu}")
    table.add_row("SDPA kernels", ", ".join(facts.sdpa_kernels) or "-")
    table.add_row("Kernels hub", hub_line(facts))
    return table


def hub_line(facts: EnvFacts) -> str:
    """'online; cached: kernels-community/flash-attn2 v4; local: -' (what the kernels hub can give here)."""
    hub = facts.hub
    reachability = {True: "reachable", False: "unreachable", None: "offline not set, reachability not checked"}
    state = "offline (HF_HUB_OFFLINE)" if hub.offline else reachability[hub.reachable]
    cached = ", ".join(f"{repo} v{','.join(map(str, versions))}" for repo, versions in hub.cached.items()) or "-"
    local = ", ".join(f"{repo}={path}" for repo, path in hub.local.items()) or "-"
    return f"{state}; cached: {cached}; LOCAL_KERNELS: {local}"


def packages_table(facts: EnvFacts) -> Table:
    table = Table(title="Packages", title_justify="left")
    table.add_column("distribution")
    table.add_column("version")
    table.add_column("imports")
    table.add_column("error", overflow="fold")
    for name in PROBED_MODULES:
        pkg = facts.package(name)
        imports = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[pkg.importable]
        table.add_row(name, pkg.version or "[dim]not installed[/]", imports, pkg.error or "")
    return table


def decision_table(decision: Decision) -> Table:
    title = f"Backends ({decision.mode}, {decision.dtype})"
    table = Table(title=title, title_justify="left")
    table.add_column("backend")
    table.add_column("verdict")
    table.add_column("why", overflow="fold")
    for cand in decision.candidates:
        lines = [f"{r.message} [dim]\\[{r.code}][/]" + (f"\n  fix: {r.fix}" if r.fix else "") for r in cand.reasons]
        if cand.provider == "hub" and cand.kernel is not None:
            lines.append(f"via the kernels hub: {cand.kernel.repo} (version {cand.kernel.version})")
        elif cand.provider == "package" and CATALOG[cand.backend].distribution:
            lines.append(f"[dim]via the {CATALOG[cand.backend].distribution} package[/]")
        if cand.note:
            lines.append(f"[dim]{cand.note}[/]")
        table.add_row(cand.backend, _VERDICT[cand.verdict], "\n".join(lines))
    return table


def summary_line(decision: Decision) -> str:
    if decision.chosen is None:
        return "No backend can run here; see the reasons above."
    line = f"Chosen: {decision.chosen} ({decision.chosen_by}, {decision.dtype})"
    if decision.loader_kernel:
        line += f"; Unsloth's own attention kernel: {decision.loader_kernel}"
    return line


def bug_report_block(facts: EnvFacts, decision: Decision) -> str:
    """A plain-text block to paste into an issue."""
    pkgs = ", ".join(
        f"{name}={pkg.version}" + ("" if pkg.importable is not False else " (import fails)")
        for name, pkg in sorted(facts.packages.items())
    )
    device = facts.device
    lines = [
        "```",
        f"attnpick doctor: os={facts.os} python={facts.python} torch={facts.torch} cuda={facts.cuda}",
        f"device={device.type} name={device.name} capability={device.capability} memory_gb={device.memory_gb}",
        f"packages: {pkgs or 'none'}",
        f"chosen={decision.chosen} mode={decision.mode} chosen_by={decision.chosen_by} dtype={decision.dtype}",
    ]
    lines += [
        f"  {c.backend}: {c.verdict}" + (" (" + ", ".join(r.code for r in c.reasons) + ")" if c.reasons else "")
        for c in decision.candidates
    ]
    lines.append("```")
    return "\n".join(lines)


def print_doctor(console: Console, facts: EnvFacts, decision: Decision) -> None:
    console.print(facts_table(facts))
    console.print(packages_table(facts))
    print_decision(console, decision)
    console.print("\nFor a bug report, copy this block:")
    console.print(bug_report_block(facts, decision), markup=False, highlight=False, soft_wrap=True)


def print_decision(console: Console, decision: Decision) -> None:
    console.print(decision_table(decision))
    console.print(summary_line(decision), style="bold")
    for hint in decision.install_hints:
        note = f"  [dim]# {hint.note}[/]" if hint.note else ""
        console.print(f"To add {hint.backend}: [bold]{hint.command}[/]{note}")


_OUTCOME = {"loaded": "[bold green]loaded[/]", "rejected": "[red]rejected[/]", "smoke_failed": "[red]smoke failed[/]",
            "load_failed": "[red]load failed[/]", "confirm_failed": "[red]not confirmed[/]"}


def print_load_report(console: Console, report: LoadReport) -> None:
    table = Table(title=f"Loading {report.model} ({report.dtype}, {report.device})", title_justify="left")
    table.add_column("backend")
    table.add_column("outcome")
    table.add_column("time", justify="right")
    table.add_column("why", overflow="fold")
    for attempt in report.attempts:
        why = "\n".join(f"{r.message} [dim]\\[{r.code}][/]" for r in attempt.reasons)
        if attempt.smoke and attempt.smoke.ok:
            why = f"smoke run passed{' (cached)' if attempt.smoke.cached else ''}"
        table.add_row(attempt.backend, _OUTCOME[attempt.outcome], f"{attempt.seconds:.1f}s", why)
    console.print(table)
    line = f"Chosen: {report.chosen}"
    if report.loader_kernel:
        line += f" (Unsloth's kernel: {report.loader_kernel})"
    console.print(line, style="bold")
    conf = report.confirmation
    if conf is not None:
        ran = ", ".join(f"{name} x{n}" for name, n in conf.calls.items()) or "nothing counted"
        status = {True: "confirmed", False: "NOT confirmed", None: "unconfirmed"}[conf.ok]
        console.print(f"Confirmation: {status}: {ran} over {conf.layers} layers"
                      + (f" ({conf.note})" if conf.note else "") + (CACHED if conf.cached else ""))
        console.print(f"Kernel: {conf.kernel_line() or 'not named by the profiler'}", markup=False)
    console.print(f"Model: {report.model_class} ({report.architecture}), transformers {report.transformers}, "
                  f"quantization: {report.quantization or 'none'}, max_seq_length {report.max_seq_length}")
    for note in report.notes:
        style = "bold yellow" if note.startswith("WARNING") else "dim"
        console.print(f"[{style}]{note}[/]")
    if report.transformers_patched:
        console.print("[yellow]Unsloth left transformers patched in this process.[/]")


def _parity_cell(measures: dict[str, Any], key: str) -> str:
    if key not in measures:
        return "-"
    x = measures[key]
    mark = "" if x.ok else " [red]> tol[/]"
    return f"{x.relative:.1e} / {x.tolerance:.0e}{mark}\n[dim]max {x.max_abs:.1e} mean {x.mean_abs:.1e}[/]"


def print_verify(console: Console, report: VerifyReport) -> None:
    table = Table(title=f"Parity of {report.model} in {report.dtype} against {report.reference}: error relative "
                  "to the reference's scale / tolerance (padding positions excluded)", title_justify="left")
    for col in ("backend", "result", "logits", "loss", "grads", "error"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        result = "[green]pass[/]" if r.ok else "[red]FAIL[/]"
        cells = [_parity_cell(r.measures, k) for k in ("logits", "loss", "grads")]
        table.add_row(r.backend, result, *cells, r.error or "")
    console.print(table)
    for name, reason in report.skipped.items():
        console.print(f"[dim]skipped {name}: {reason.message}[/]")


def print_bench(console: Console, report: BenchReport) -> None:
    up = speedups(report)
    title = (f"{report.mode} bench: {report.model} (heads {report.shape['heads']}, kv {report.shape['kv_heads']}, "
             f"head_dim {report.shape['head_dim']}), {report.dtype}, batch {report.batch}, on {report.device}")
    table = Table(title=title, title_justify="left")
    columns = {
        "kernel": ("forward", "fwd+bwd", "TFLOP/s fwd|fwd+bwd", "peak MiB", "vs eager"),
        "train": ("step", "tokens/s", "peak MiB", "vs eager"),
        "infer": ("prefill", "decode/token", "peak MiB", "vs eager"),
    }[report.mode]
    for col in ("backend", "seq", *columns):
        table.add_column(col, overflow="fold")
    for row in report.rows:
        if not row.ok:
            table.add_row(row.version, str(row.seq), f"[red]{row.error}[/]", *[""] * (len(columns) - 1))
            continue
        m = row.metrics
        ratio = up.get(row.backend, {}).get(row.seq)
        vs = f"{ratio:.2f}x" if ratio else "-"
        if report.mode == "kernel":
            f, fb = m["forward"], m["forward_backward"]
            cells = [f"{fmt_seconds(f['median_s'])} {spread(f)}", f"{fmt_seconds(fb['median_s'])} {spread(fb)}",
                     f"{f['tflops']:.3f} | {fb['tflops']:.3f}", f"{m['peak_mb']:.1f}", vs]
        elif report.mode == "train":
            cells = [f"{fmt_seconds(m['step']['median_s'])} {spread(m['step'])}", f"{m['tokens_per_s']:.0f}",
                     f"{m['peak_mb']:.1f}", vs]
        else:
            cells = [f"{fmt_seconds(m['prefill']['median_s'])} {spread(m['prefill'])}",
                     fmt_seconds(m["decode_per_token_s"]), f"{m['peak_mb']:.1f}", vs]
        table.add_row(row.version, str(row.seq), *cells)
    console.print(table)
    if report.matmul_peak_tflops:
        console.print(f"[dim]measured matmul peak ({report.dtype}): {report.matmul_peak_tflops:.3f} TFLOP/s[/]")
    for name, reason in report.excluded.items():
        console.print(f"[dim]excluded {name}: {reason.message}[/]")
    console.print("[dim]At 256 tokens attention is ~1-3% of a 2-3B model's training FLOPs: padding waste and the "
                  "rest of the step matter more than the kernel there.[/]")


def backend_phrase(load: LoadReport) -> str:
    """'sdpa (flash kernel for CPU), float32, nf4': the backend, the kernel that ran, dtype and quantization, as
    train, chat and export say it."""
    conf = load.confirmation
    kernel = f" ({conf.kernel_summary()})" if conf is not None and conf.kernel_summary() else ""
    unsloth = f" (Unsloth kernel {load.loader_kernel})" if load.loader_kernel else ""
    return f"{load.chosen}{kernel}{unsloth}, {load.dtype}, {load.quantization or 'no quantization'}"


CACHED = " (on an earlier run of this machine, packages and model: cached)"


def print_train(console: Console, report: TrainReport) -> None:
    load = report.load
    console.print(f"Backends tried, in order ({load.decision.chosen_by}, {load.dtype}, {load.device}):")
    for attempt in load.attempts:
        why = "; ".join(r.message for r in attempt.reasons) or "smoke run passed, loaded"
        console.print(f"  {attempt.backend:<18} {attempt.outcome:<13} [dim]{why}[/]", highlight=False)
    conf = load.confirmation
    ran = ", ".join(f"{k} x{v}" for k, v in ((conf.calls or conf.forwards) if conf else {}).items())
    console.print(f"Confirmed: {ran or 'unconfirmed'}" + (CACHED if conf is not None and conf.cached else ""))
    if conf is not None and conf.kernel_line():
        console.print(f"Kernel: {conf.kernel_line()}", markup=False)
    for note in load.notes:
        if note.startswith("WARNING"):
            console.print(note, style="bold yellow", markup=False)
    first, last = (report.losses[0][1], report.losses[-1][1]) if report.losses else (float("nan"), float("nan"))
    autocast = f", {report.autocast} autocast" if report.autocast else ""
    console.print(f"[bold]Trained[/] {report.model} with {backend_phrase(load)}{autocast}")
    console.print(f"Steps {report.steps}: loss {first:.4f} -> {last:.4f}; {report.tokens_seen:,} tokens in "
                  f"{report.seconds:.1f}s ({report.tokens_per_s or 0:,.0f} tokens/s)")
    if report.eval is not None:
        held = f"{report.eval['examples']} examples from {report.eval['source']}"
        trend = " -> ".join(f"{loss:.4f}" for _, loss in report.eval_losses[-2:])
        console.print(f"Eval loss (answer tokens): {trend or 'none'} at step {report.steps}; held out {held}",
                      highlight=False)
    console.print(f"Packing: {'on' if report.packing.enabled else 'off'}: {report.packing.reason}")
    if report.padding_share is not None:
        console.print(f"Padding: {report.padding_share:.0%} of the {report.tokens_fed:,} tokens fed to the model")
    data = report.data
    layouts = ", ".join(f"{name} {n}" for name, n in data.layouts.items())
    trained = (report.eval or {}).get("trained_on", data.examples)
    held = f" ({data.examples - trained} held out for eval)" if trained != data.examples else ""
    console.print(f"Data: {data.rows} rows from {data.dataset} ({layouts}): {trained} trained on{held}, "
                  f"{data.dropped.count} dropped; {data.truncated} cut to max_seq_length {report.load.max_seq_length} "
                  f"({data.truncate}), {data.lost_end_of_turn} of them lost the answer's end-of-turn token")
    if data.dropped.count:
        console.print(f"  dropped: {data.dropped.summary(report.load.max_seq_length)}; first rows "
                      f"{data.dropped.examples}", highlight=False)
    for difference in report.load.ranks_that_differed:
        console.print(f"[yellow]rank {difference.rank} lacked: {difference.lacked}[/]")
    for note in report.notes:
        style = "bold yellow" if note.startswith("WARNING") else "dim"
        console.print(f"[{style}]{note}[/]")
    console.print(f"Written to {report.output}: adapter/, metrics.json, loss.png, load_report.json, train_report.json")
