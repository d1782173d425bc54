"""The hypothesis profile of the fuzz tests (issue 14, deliverable 8).

`derandomize=True`: the examples are a function of the test alone, so CI sees
the same inputs on every run; no deadline (a first TensorFlow call takes
seconds); a bounded number of examples per test so that the fuzz tests run in
well under a minute on two CPUs. `KMTL_FUZZ_EXAMPLES=N` raises the number of
examples of every test for a long local run; `KMTL_FUZZ_RANDOM=1` draws new
examples on each run instead of the fixed ones.
"""

import os

from hypothesis import HealthCheck
from hypothesis import settings

EXAMPLES = int(os.environ.get("KMTL_FUZZ_EXAMPLES", "0"))

settings.register_profile(
    "kmtl-fuzz",
    derandomize=os.environ.get("KMTL_FUZZ_RANDOM", "0") == "0",
    deadline=None,
    max_examples=EXAMPLES or 25,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
settings.load_profile("kmtl-fuzz")

