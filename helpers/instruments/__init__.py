"""The book's instruments: private servers, timers and run details, timelines, plots, shared workloads.

Chapters use this package; it never imports from them."""
