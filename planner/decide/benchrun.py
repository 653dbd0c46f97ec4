"""A finite serving benchmark run as the speed model sees it (pure): what a benchmark reports
is total output tokens / wall time of a run of prompts sent at once or at a Poisson rate, whose
wall time includes the queue, the prefill of every prompt and a drain at a shrinking batch.
benchmarks/speed_accuracy.py predicts the published measurements with it; the planner's own
figures are steady states (perf.output_tokens_per_s) and do not use it.
"""

from __future__ import annotations

import math

from planner.decide import perf
from planner.decide.perf import Hardware, ModelLoad


def token_gpu_s(
    load: ModelLoad, hw: Hardware, batch: float, context: float, online: bool = True
) -> float:
    """GPU seconds per output token with ``batch`` sequences decoding. With pipeline parallel
    pp micro-batches keep the stages busy at once: every stage step advances one micro-batch
    of sequences by a token, so a token costs a stage step / micro."""
    micro = max(batch / hw.pp, 1.0)
    return perf.decode_step_s(load, hw, micro, context, online) / micro


def drain_s(
    load: ModelLoad, hw: Hardware, batch: float, context: float, output: float, online: bool = True
) -> float:
    """Seconds until the last of ``batch`` running requests finishes when no new one comes,
    their remaining outputs exponential with mean ``output`` (memoryless: any running request
    has, on average, a whole mean ahead). With b left, the next finish comes after output / b
    tokens, each a decode step of b sequences: sum over b of output / b x step(b). Exact for
    b <= 32, then bins of b with the step at the bin's middle."""
    total, b, top = 0.0, 1, round(batch)
    while b <= top:
        hi = b if b <= 32 else min(top, int(b * 1.25))
        harmonic = sum(1.0 / k for k in range(b, hi + 1))
        mid = (b + hi) / 2
        total += output * harmonic * token_gpu_s(load, hw, mid, context, online) * mid
        b = hi + 1
    return total


def capped_drain_s(
    load: ModelLoad,
    hw: Hardware,
    batch: int,
    context: float,
    output: float,
    max_output: int,
    online: bool = True,
) -> float:
    """Seconds for ``batch`` requests started together to finish when their output lengths are
    uniform between low = 2 x output - max_output and max_output (mean ``output``): all of them
    decode until the shortest ends, then the batch shrinks evenly from ``batch`` to the last
    request, which ends at the expected longest of ``batch`` such lengths, low + (max_output -
    low) x batch / (batch + 1) (20 slices, each at the step of its middle batch). The even
    spread is an assumption: a benchmark that stops at end of sequence publishes the mean and
    the cap, not the lengths. Raises ValueError when no such spread has that mean (low < 1)."""
    low = 2 * output - max_output
    if low < 1 or max_output < output:
        raise ValueError(f"mean output {output} and cap {max_output}: no even spread fits")
    end = low + (max_output - low) * batch / (batch + 1)
    total = low * token_gpu_s(load, hw, batch, context, online) * batch
    slices = 20
    for i in range(slices):
        running = batch - (batch - 1) * (i + 0.5) / slices
        total += (end - low) / slices * token_gpu_s(load, hw, running, context, online) * running
    return total


def known_lengths_decode_s(
    load: ModelLoad, hw: Hardware, lengths: tuple[int, ...], context: float, online: bool = True
) -> float:
    """Decode seconds of requests started together with these output lengths: between one
    request's end and the next, the step runs the requests still going."""
    total, done = 0.0, 0
    ordered = sorted(lengths)
    for i, length in enumerate(ordered):
        running = len(ordered) - i
        if length > done:
            total += (length - done) * token_gpu_s(load, hw, running, context, online) * running
            done = length
    return total


def benchmark_output_tokens_per_s(
    load: ModelLoad,
    hw: Hardware,
    requests: int,
    max_batch: int,
    prompt: int,
    output: int,
    rate_per_s: float | None = None,
    fixed_lengths: bool = False,
    online: bool = True,
    max_batched_tokens: int | None = None,
    max_output: int | None = None,
    output_lens: tuple[int, ...] = (),
) -> float:
    """Output tokens/s a serving benchmark reports: total output tokens / wall time of a finite
    run of ``requests`` prompts, sent all at once (``rate_per_s`` None, or a client concurrency
    cap folded into ``max_batch``) or arriving at ``rate_per_s``. The server runs at most
    ``max_batch`` sequences (max_num_seqs, KV capacity, client cap).

    Fixed lengths (random datasets, offline benchmark_throughput): waves of max_batch requests
    that finish together. Dataset lengths (ShareGPT): outputs taken as exponential with the
    stated mean; the run is a steady phase at the full batch while requests wait (or while they
    arrive), then a drain in which the batch shrinks as requests finish and the longest ones
    decode at small batch - which is why such a run reports less than the steady state.

    Capped lengths (``max_output``: outputs end at end of sequence, at most max_output tokens,
    ``output`` their mean), prompts sent at once: a steady phase at the full batch while
    requests wait, then the last batch drains until its longest output ends (near the cap),
    the lengths taken as uniform up to the cap around the stated mean (capped_drain_s).

    Known lengths (``output_lens``: every request's output length, as a benchmark's result file
    lists them), prompts sent at once and all running in one batch: the batch shrinks as each
    request ends, step by step (known_lengths_decode_s)."""
    context = prompt + output / 2
    cap = max(1, min(max_batch, requests))
    prefill = perf.batched_prefill_s(load, hw, prompt, requests, max_batched_tokens)
    # One API-server process does every request's host work in turn (perf.output_tokens_per_s).
    host = requests * perf.constant("request_overhead_ms") * 1e-3 if online else 0.0
    if output_lens:
        if rate_per_s or not len(output_lens) == requests <= cap:
            raise ValueError("known output lengths: only for one batch of prompts sent at once")
        decode = known_lengths_decode_s(load, hw, output_lens, context, online)
        return sum(output_lens) / max(prefill + decode, host)
    if max_output:
        if rate_per_s:
            raise ValueError("capped output lengths: only for prompts sent at once")
        steady = (requests - cap) * output * token_gpu_s(load, hw, cap, context, online)
        drain = capped_drain_s(load, hw, cap, context, output, max_output, online)
        return requests * output / max(prefill + steady + drain, host)
    if fixed_lengths:
        waves, rest = divmod(requests, cap)
        decode = waves * output * cap * token_gpu_s(load, hw, cap, context, online)
        if rest:
            decode += output * rest * token_gpu_s(load, hw, rest, context, online)
        busy = prefill + decode
        return requests * output / max(busy, host, requests / rate_per_s if rate_per_s else 0.0)
    batch = float(cap)
    if rate_per_s:  # Little's law: requests in flight = rate x time in flight, capped
        batch = 1.0
        for _ in range(8):
            itl = token_gpu_s(load, hw, batch, context, online) * batch  # between tokens
            batch = min(cap, max(1.0, rate_per_s * output * itl))
    steady = (requests - batch) * output * token_gpu_s(load, hw, batch, context, online)
    arrivals = requests / rate_per_s if rate_per_s else 0.0
    drain = drain_s(load, hw, batch, context, output, online)
    wall = max(arrivals, host, prefill + steady) + drain
    return requests * output / wall


def first_wave_ttft_s(
    load: ModelLoad, hw: Hardware, wave: int, prompt: int, max_batched_tokens: int | None = None
) -> list[float]:
    """Each TTFT of ``wave`` prompts that reach an idle server at once: chunked prefill serves
    them first come first served, max_batched_tokens a step, so a prompt's first token comes
    with the step that ends its prefill (the batched prefill of every token up to that step's
    end); the API server does each request's host work in turn."""
    chunk = max_batched_tokens or perf.chunk_tokens(hw)
    host = perf.constant("request_overhead_ms") * 1e-3
    out = []
    for i in range(1, wave + 1):
        done = min(math.ceil(i * prompt / chunk) * chunk, wave * prompt)
        gpu = perf.batched_prefill_s(load, hw, prompt, done / prompt, max_batched_tokens)
        out.append(max(gpu, (i - 1) * host) + host)
    return out


def benchmark_ttft_s(
    load: ModelLoad,
    hw: Hardware,
    requests: int,
    prompt: int,
    output: int,
    running: int,
    client: int | None = None,
    fixed_lengths: bool = False,
    max_batched_tokens: int | None = None,
) -> float:
    """Mean time to first token a serving benchmark reports for a finite run of ``requests``
    prompts, at most ``client`` in flight (a closed loop: --max-concurrency; None: all sent at
    once), the server running at most ``running`` of them (max_num_seqs, KV capacity). Not
    fitted; benchmarks/ttft_accuracy.py scores it on published runs.

    The first wave reaches an idle server together (first_wave_ttft_s). A closed loop the
    server runs whole then replaces each finished request at once, its prompt riding in the
    others' steps (perf.loaded_ttft_s, the planner's own figure); requests of one fixed length
    end, and so restart, in the groups one step prefilled together, each waiting for its
    group's prefill too. Requests the server cannot
    run yet wait in its queue for running ones to finish: all sent at once, the j-th past the
    first wave waits for j finishes, each of the ``running`` taking ``output`` loaded steps
    (fixed lengths: in waves; dataset lengths: spread evenly); a closed loop past ``running``
    keeps (client - running) waiting, so each waits for that many finishes."""
    sent = requests if client is None else min(client, requests)
    wave = max(1, min(running, sent))
    ttfts = first_wave_ttft_s(load, hw, wave, prompt, max_batched_tokens)
    steady = perf.loaded_ttft_s(load, hw, wave, prompt, output)
    if fixed_lengths:  # requests of one length restart in the groups one step prefilled
        chunk = max_batched_tokens or perf.chunk_tokens(hw)
        group = max(1, min(wave, chunk // max(prompt, 1)))
        if group > 1:
            steady += perf.batched_prefill_s(load, hw, prompt, group - 1, max_batched_tokens)
    later = requests - wave
    if later <= 0 or sent <= running:
        return (sum(ttfts) + max(later, 0) * steady) / requests
    step = perf.loaded_token_latency_s(load, hw, wave, prompt, output)
    if client is not None:  # a closed loop larger than the server: a steady queue
        wait = (client - running) * output * step / running
        return (sum(ttfts) + later * (wait + steady)) / requests
    if fixed_lengths:  # each starts when the one a wave ahead of it ends
        ends = [t + output * step for t in ttfts]
        for j in range(later):
            first = ends[j] + steady
            ttfts.append(first)
            ends.append(first + output * step)
        return sum(ttfts) / requests
    mean_first = sum(ttfts) / wave
    waits = sum(j * output * step / running for j in range(1, later + 1))
    return (sum(ttfts) + later * (mean_first + steady) + waits) / requests
