"""The tenants' few-shot heads: what a head is (``head``), how a tenant's kind is chosen and its
out-of-scope threshold calibrated (``choice``, ``thresholds``), and the intent names used as
examples (``intent_names``, which encodes them with the encoder it is given). Works on
embeddings; loads no model itself."""
