"""A tiny HuBERT-for-classification checkpoint with random weights, made on the spot: the real
transformers loading code without a download."""
from __future__ import annotations

GTZAN_LABELS = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]


def make_tiny_checkpoint(path, labels=GTZAN_LABELS, multi_label=False, seed=0):
    """Save a tiny HuBERT-for-classification + feature extractor (random weights) to `path`."""
    import torch
    from transformers import HubertConfig, HubertForSequenceClassification, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    cfg = HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32, 32, 32, 32, 32), conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, classifier_proj_size=16,
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )
    HubertForSequenceClassification(cfg).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(path)
    return path
