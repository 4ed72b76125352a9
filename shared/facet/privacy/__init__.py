"""Shopper-level differential privacy: the settings and budget of a region, DP-SGD over its shoppers,
and the one-run audit that checks the accounting. The shopper is the unit of privacy: everything one
shopper did in a region can change a published update only as much as the budget allows."""
