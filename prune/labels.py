"""The label convention shared by tenants' examples and the bundled datasets."""

# examples with this label teach the out-of-scope threshold, not an intent
OOS_LABEL = "oos"
