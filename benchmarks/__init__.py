"""The benchmark harness: model specs, presets and (later) the compare CLI."""
