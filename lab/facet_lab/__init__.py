"""The lab: the `facet` command, the benchmarks and the whole-system runner. It sits above the shared
library and the services, and is installed for development, never into a service image."""
