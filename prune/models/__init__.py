"""The model families the encoder runs, one file each (``bert``: BERT-family sentence
encoders), and the reading and checking of a model's folder (``files``): its config, weights,
tokenizer and fingerprint. A new family is a new file here, with the same ``run`` of a range of
layers that the encoder, the pruning and int8 call."""
