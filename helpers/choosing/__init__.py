"""Part 5, choosing a model: the measured comparison of chapter 15."""
