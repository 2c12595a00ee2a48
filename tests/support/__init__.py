"""What tests (and benchmarks) share: clocks, HTTP helpers, servers in threads, process launchers."""
