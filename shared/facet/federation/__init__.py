"""Federation math: staleness weights, asynchronous aggregation, update validation and signing."""
