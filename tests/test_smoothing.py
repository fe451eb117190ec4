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
    for change_s in (0.0, 1.0):
        s = ScoreSmoother(0.0, change_s=change_s)
        s.update(np.array([1.0, 0.0]), 0)
        assert np.array_equal(s.update(np.array([0.2, 0.8]), 1), [0.2, 0.8])
        assert np.array_equal(s.update(np.array([0.9, 0.1]), 2, recent=np.array([0.1, 0.9])), [0.9, 0.1])


def test_hysteresis_margin_is_relative_to_the_leader():
    s = ScoreSmoother(0.0, switch_margin=0.1)
    s.update(np.array([0.5, 0.4]), 0)
    assert s.leader == 0
    s.update(np.array([0.45, 0.49]), 1)  # challenger ahead by 8.9 % < 10 %
    assert s.leader == 0
    s.update(np.array([0.44, 0.49]), 2)  # ahead by 11.4 %
    assert s.leader == 1


def test_hysteresis_means_the_same_at_any_score_scale():
    """A sigmoid tagger's tags sit near 0.2, a softmax leader near 0.6: scaled copies of the same
    score sequence must switch the leader at the same update."""
    rng = np.random.default_rng(0)
    seq = [np.array([0.5, 0.35 + 0.3 * t / 60]) + rng.uniform(-0.06, 0.06, 2) for t in range(60)]
    switches = []
    for scale in (0.3, 1.0, 1.6):
        s = ScoreSmoother(2.0, switch_margin=0.08)
        leaders = [(s.update(x * scale, float(t)), s.leader)[1] for t, x in enumerate(seq)]
        switches.append(leaders)
    assert switches[0] == switches[1] == switches[2]
    assert len(set(switches[0])) == 2  # the sequence does cross the margin somewhere


def test_candidates_limit_leader():
    s = ScoreSmoother(0.0)
    s.update(np.array([0.9, 0.05, 0.05]), 0, candidates=np.array([1, 2]))
    assert s.leader in (1, 2)


def _steady(s, x, t0, t1, hop=1.0, recent=None):
    t = t0
    while t <= t1 + 1e-9:
        s.update(x, t, recent=recent)
        t += hop


def test_change_restarts_readout_after_change_s_of_consistent_evidence():
    old, new = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.2, 0.7])
    for hop in (0.5, 1.0):
        s = ScoreSmoother(8.0, switch_margin=0.1, change_s=1.0, recent_s=3.0)
        _steady(s, old, 0.0, 20.0, hop)
        t = 20.0 + hop
        mixed = 0.8 * old + 0.2 * new  # a long window still mostly hears the old music
        first = t
        while s.changed_at is None:
            s.update(mixed, t, recent=new)
            assert t - first <= 1.0 + 1e-9, "no change after change_s of consistent evidence"
            t += hop
        assert t - hop - first == 1.0  # the confirming update is change_s after the first differing one
        assert s.leader == 2 and np.allclose(s.state, new)
        assert s.changed_at == first - 1.5  # the first differing `recent` span was about half new
        assert s.started_at == t - hop  # the readout's age (calibration) counts from the restart


def test_single_odd_update_does_not_restart():
    old, odd = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.2, 0.7])
    s = ScoreSmoother(4.0, switch_margin=0.1, change_s=1.0)
    _steady(s, old, 0.0, 20.0)
    s.update(old, 21.0, recent=odd)  # one odd window
    for t in range(22, 30):
        s.update(old, float(t))
    assert s.changed_at is None and s.leader == 0 and s.started_at == 0.0
    assert s.state[0] > 0.6
    s.reset()
    s.update(old, 31.0)
    assert s.started_at == 31.0


def test_change_off_keeps_plain_ema():
    old, new = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.2, 0.7])
    s = ScoreSmoother(4.0, switch_margin=0.1, change_s=0.0)
    _steady(s, old, 0.0, 20.0)
    _steady(s, old, 21.0, 25.0, recent=new)
    assert s.changed_at is None and s.leader == 0 and np.allclose(s.state, old)
