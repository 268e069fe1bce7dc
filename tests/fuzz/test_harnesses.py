"""The coverage-guided harnesses, run without atheris: their seeds, any saved inputs under
``tests/fuzz/corpus/<harness>/``, and a few hundred seeded random inputs, so the harnesses
keep working (and keep checking) between fuzzing campaigns."""

from __future__ import annotations

import random
from pathlib import Path

import fuzz_decode
import fuzz_pair

CORPUS = Path(__file__).parent / "corpus"
SEED = 0


def _saved(name: str) -> list[tuple[str, bytes]]:
    folder = CORPUS / name
    paths = sorted(folder.iterdir()) if folder.is_dir() else []
    return [(str(p), p.read_bytes()) for p in paths]


def _random_inputs(count: int, longest: int) -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    inputs = [rng.randbytes(rng.randrange(longest)) for _ in range(count)]
    return [(f"random input {i} (seed {SEED})", data) for i, data in enumerate(inputs)]


def _run(harness, inputs: list[tuple[str, bytes]]) -> None:
    for name, data in inputs:
        try:
            harness.one_input(data)
        except Exception:
            print(f"{name}: {data.hex()}")
            raise


def test_the_decoder_harness_on_seeds_saved_and_random_datagrams():
    seeds = [(f"seed {i}", data) for i, data in enumerate(fuzz_decode._seeds())]
    _run(fuzz_decode, seeds + _saved("decode") + _random_inputs(3000, 120))


def test_the_pair_harness_seeds_transfer_everything_they_write():
    for data in fuzz_pair.SEEDS:
        fuzz_pair.one_input(data)
    # The seeds are worth starting from: the connections open and data flows.
    r = fuzz_pair.Reader(fuzz_pair.SEEDS[2])
    pair = fuzz_pair.Pair(r)
    while not r.exhausted:
        pair.step()
    client, server = pair.watches
    assert client is not None and server is not None
    assert client.written == server.delivered == 20000
    assert server.written == client.delivered == 3000


def test_the_pair_harness_on_saved_and_random_scripts():
    _run(fuzz_pair, _saved("pair") + _random_inputs(300, 600))
