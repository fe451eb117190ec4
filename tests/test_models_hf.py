import time

import numpy as np
import pytest
from support.models import GTZAN_LABELS, make_tiny_checkpoint, tone

from stream import EngineConfig, ModelLoadError, StreamEngine, load_model


def test_tiny_checkpoint_loads_through_transformers(tiny_model, tiny_ckpt):
    assert tiny_model.labels == GTZAN_LABELS  # from config.id2label
    assert tiny_model.sample_rate == 16000 and not tiny_model.multi_label
    probs = tiny_model.predict(np.stack([tone(440, 2, 16000), tone(3000, 2, 16000)]))
    assert probs.shape == (2, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert load_model(tiny_model) is tiny_model


def test_labels_are_read_from_config(tmp_path):
    labels = ["a", "b", "c"]
    m = load_model(str(make_tiny_checkpoint(tmp_path / "abc", labels=labels, multi_label=True)))
    assert m.labels == labels and m.multi_label
    p = m.predict(np.random.default_rng(0).standard_normal((1, 8000)).astype(np.float32))
    assert p.shape == (1, 3) and not np.isclose(p.sum(), 1.0)  # independent sigmoids


def test_engine_end_to_end_on_tiny_checkpoint(tiny_model):
    x = (np.stack([tone(220, 6, 48000), tone(330, 6, 48000)], 1) * 20000).astype(np.int16)
    got = []
    with StreamEngine(tiny_model, EngineConfig(window_s=4, hop_s=1), on_result=got.append) as e:
        for i in range(0, len(x), 4800):
            e.feed(x[i:i + 4800], 48000)
        e.flush()  # the resampler holds back a few ms of audio until the stream ends
        deadline = time.monotonic() + 30
        while (e.latest is None or e.latest.time_s < 5.9) and time.monotonic() < deadline:
            time.sleep(0.02)
        r = e.latest
        assert r.time_s == pytest.approx(6.0, abs=0.05)
        assert r.label in GTZAN_LABELS and len(r.scores) == 5 and set(r.raw_scores) == set(GTZAN_LABELS)
        assert list(r.scores.values()) == sorted(r.scores.values(), reverse=True)
        assert r.inference_ms > 0 and r.latency_ms >= r.inference_ms * 0.5
        assert e.stats.windows_classified + e.stats.windows_skipped == 4  # windows at 3, 4, 5, 6 s


def test_directory_without_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no checkpoint.*musicnn"):
        load_model(str(tmp_path))


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope" / "x"))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(str(f))


def test_not_audio_classification(tmp_path):
    from transformers import BertConfig, BertModel, HubertConfig, HubertModel

    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelLoadError, match="not an audio-classification"):
        load_model(str(tmp_path / "bert"))
    hub = HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                       conv_dim=(16,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    HubertModel(hub).save_pretrained(tmp_path / "hubert_base")  # encoder without a classification head
    with pytest.raises(ModelLoadError, match="not an audio-classification"):
        load_model(str(tmp_path / "hubert_base"))


def test_corrupt_checkpoint(tmp_path):
    d = make_tiny_checkpoint(tmp_path / "bad")
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="bad"):
        load_model(str(d))


def test_unreachable_hub_fails_fast_with_advice(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        load_model("someone/no-such-model")
    assert time.monotonic() - t0 < 10
    msg = str(info.value)
    assert "someone/no-such-model" in msg and "unreachable" in msg and "musicnn" in msg


def test_offline_flag_skips_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_model("someone/no-such-model")


def test_bad_spec_type():
    with pytest.raises(ModelLoadError, match="non-empty string"):
        load_model("")
    with pytest.raises(ModelLoadError):
        load_model(42)


def test_every_load_sets_the_notice(tiny_ckpt):
    """Front ends print `model.notice` as it is, whatever the spec."""
    from support.models import BandModel

    assert load_model("musicnn").notice == "Model: bundled offline musicnn."
    assert load_model("musicnn-mtt").notice == "Model: bundled offline musicnn-mtt."
    m = load_model(tiny_ckpt)
    assert m.notice.startswith(f"Model: {tiny_ckpt} (") and m.accel.mode in m.notice
    own = BandModel()
    assert load_model(own) is own and own.notice == "Model: band."


def test_load_error_parts_let_a_front_end_phrase_its_own_advice(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        load_model(str(tmp_path / "nope"))
    e = info.value
    assert e.spec == str(tmp_path / "nope") and "does not exist" in e.cause
    assert e.fallback == "musicnn" and "load_model" not in e.advice and "checkpoint directory" in e.advice
    assert str(e).endswith("or use the bundled offline model: load_model('musicnn').")
    with pytest.raises(ModelLoadError) as info:
        load_model("musicnn-xyz")
    assert info.value.fallback is None and "musicnn-mtt" in info.value.advice
    assert "load_model" not in str(info.value)
