"""One backend and one packing decision for every rank of a `torchrun` / `accelerate launch` job.

Every rank probes its own machine and smoke-tests the candidates its decision accepts; the ranks all-gather
what they found, and the pure `attnpick.decide.decision.common_to_ranks` picks the first backend that runs on every
rank. torch.distributed does the communicating; nothing here decides.
"""

from __future__ import annotations

from typing import Any

from attnpick import settings
from attnpick.decide.decision import Decision, RankDifference, common_to_ranks
from attnpick.decide.facts import EnvFacts, ModelFacts
from attnpick.load.smoke import run_smoke, smoke_job

rank_and_world = settings.rank_and_world  # one reading of RANK and WORLD_SIZE (attnpick.settings)


def init_process_group() -> None:
    """Start torch.distributed through accelerate (gloo on CPU, nccl on GPUs), once; a job whose script started it
    already keeps its own."""
    from accelerate import PartialState  # heavy: only in a distributed job

    PartialState()


def local_verdicts(facts: EnvFacts, decision: Decision, model_facts: ModelFacts | None) -> dict[str, str | None]:
    """Per candidate, None when it runs on this rank (eligible and its smoke run passes), else why not."""
    verdicts: dict[str, str | None] = {}
    for cand in decision.candidates:
        if cand.verdict == "rejected":
            verdicts[cand.backend] = "; ".join(r.message for r in cand.reasons)
            continue
        smoke = run_smoke(smoke_job(cand, facts, model_facts, decision.dtype), facts)
        verdicts[cand.backend] = None if smoke.ok else (smoke.reason.message if smoke.reason else "smoke failed")
    return verdicts


def gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order."""
    import torch.distributed as dist  # heavy: only in a distributed job

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def agree_on_backend(facts: EnvFacts, decision: Decision,
                     model_facts: ModelFacts | None) -> tuple[Decision, tuple[RankDifference, ...]]:
    """The decision every rank follows, and the ranks that lacked something another rank had."""
    return common_to_ranks(decision, gather(local_verdicts(facts, decision, model_facts)))


def all_true(flag: bool) -> bool:
    """True when `flag` is true on every rank."""
    return all(gather(flag))


def barrier() -> None:
    import torch.distributed as dist  # heavy: only in a distributed job

    dist.barrier()
