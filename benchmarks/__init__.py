"""The benchmark harness: model specs and presets, the compare CLI, the regression gate and the perf suite."""
