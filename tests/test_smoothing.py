import math

import numpy as np

from stream.smoothing import ScoreSmoother


def test_time_constant_is_independent_of_hop():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    results = []
    for hop in (0.25, 1.0):
        s = ScoreSmoother(tau_s=2.0)
        s.update(a, 0.0)
        t = 0.0
        while t < 2.0 - 1e-9:
            t += hop
            out = s.update(b, t)
        results.append(out[1])
    # after tau seconds of the new class, 1 - 1/e of the way there, whatever the hop
    assert np.allclose(results, 1 - math.exp(-1), atol=1e-9)


def test_zero_disables_smoothing():
    s = ScoreSmoother(0.0)
    s.update(np.array([1.0, 0.0]), 0)
    assert np.array_equal(s.update(np.array([0.2, 0.8]), 1), [0.2, 0.8])


def test_hysteresis_keeps_leader_until_margin():
    s = ScoreSmoother(0.0, switch_margin=0.1)
    s.update(np.array([0.6, 0.4]), 0)
    assert s.leader == 0
    s.update(np.array([0.47, 0.53]), 1)  # challenger ahead by 0.06 < 0.1
    assert s.leader == 0
    s.update(np.array([0.44, 0.56]), 2)  # ahead by 0.12
    assert s.leader == 1


def test_candidates_limit_leader():
    s = ScoreSmoother(0.0)
    s.update(np.array([0.9, 0.05, 0.05]), 0, candidates=np.array([1, 2]))
    assert s.leader in (1, 2)
