"""t-koma's benchmarks: `python -m bench` runs the side-by-side suite (see bench/run_all.py and README.md),
`python -m bench.soak` the soak; bench/providers.py, engine.py, store.py and gateway.py are standalone scripts."""
